#pragma once
/// \file
/// What a loop reports instead of dropping silently: failures nobody
/// observed, callbacks that threw, tasks abandoned at shutdown.

#include <cstdint>
#include <exception>
#include <functional>
#include <source_location>
#include <string>
#include <string_view>

#include "spindle/clock.hpp"

namespace spindle {

/// One report from a loop to its diagnostic handler.
struct diagnostic {
  enum class kind : std::uint8_t {
    unobserved_failure,  ///< a task failed and nobody awaited its handle
    callback_failure,    ///< a call_soon / call_later / threadsafe callback threw
    abandoned_task,      ///< a task did not finish within the shutdown grace period
    dropped_callback,    ///< a callback was destroyed without running (loop destroyed)
  };
  kind what = kind::unobserved_failure;
  std::string loop;            ///< the loop's name
  std::string task;            ///< the task's name, or empty
  std::source_location where;  ///< where the task was spawned (if a task)
  std::string message;         ///< human-readable detail (exception text, counts)
  std::exception_ptr error;    ///< the exception, when there is one
};

[[nodiscard]] const char* to_string(diagnostic::kind k) noexcept;

/// Formats a diagnostic as one greppable line:
/// `spindle: loop=<name> event=<kind> task=<name|file:line> <message>`.
[[nodiscard]] std::string format_line(const diagnostic& d);

using diagnostic_handler = std::function<void(const diagnostic&)>;

/// The default handler: format_line() to stderr.
void write_to_stderr(const diagnostic& d) noexcept;

/// Renders where a task came from: its name if it has one, else file:line.
[[nodiscard]] std::string describe_task(const std::string& name, const std::source_location& where);
/// A duration for people: "250 ms", "1.5 s" (`forever`: "forever").
[[nodiscard]] std::string describe_duration(duration d);

/// A function's name as a person reads it, from a compiler's pretty name
/// (std::source_location::function_name()): qualified name only, without
/// return type, parameters, template arguments or g++'s "[with ...]":
/// "spindle::task<void> ns::worker(std::shared_ptr<S>) [with S = ...]"
/// becomes "ns::worker". A lambda ends in "::lambda".
[[nodiscard]] std::string readable_function_name(std::string_view pretty);

}  // namespace spindle
