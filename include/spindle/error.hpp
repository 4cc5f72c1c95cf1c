#pragma once
/// \file
/// The error hierarchy and the error-kind registry. Every error the
/// runtime raises derives from spindle::error and carries one error_kind,
/// whose stable name (kind()) tools can rely on: the CLI's JSON output, the
/// fetch engine's statistics, metrics, retry predicates.

#include <array>
#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace spindle {

/// Every kind of failure spindle reports, in one registry. The names
/// (error_kind_name) are stable: never localised, never reworded, and new
/// kinds are only ever added. Layers above the core raise the kinds listed
/// for them; the core only knows their names.
enum class error_kind : std::uint8_t {
  exception,     ///< not a spindle::error (any other exception)
  application,   ///< an application's own error class: its kind() names it
  cancelled,     ///< the task or scope was cancelled
  timeout,       ///< a deadline expired
  wrong_thread,  ///< a loop method called from another thread
  loop_running,  ///< a loop run while running, or inside another loop
  shutdown,      ///< the loop (or pool, portal) stopped first
  usage,         ///< the API used in a way that cannot work
  system,        ///< an operating-system call failed
  rejected,      ///< a pool or portal refused the work (full, or shut down)
  closed,        ///< a channel was closed
  group,         ///< several children of a task group failed
  dns,           ///< net: a name did not resolve
  connect,       ///< net: no connection, or it broke before the exchange
  tls,           ///< net: the TLS handshake or certificate check failed
  invalid_url,   ///< http: the URL cannot be fetched
  protocol,      ///< http: the peer broke the protocol
  redirect,      ///< http: too many redirects, or a refused one
  http_status,   ///< http: a status the caller asked to treat as a failure
};

namespace detail {
inline constexpr std::array<std::string_view, 19> error_kind_names{
    "exception", "application", "cancelled", "timeout",  "wrong_thread", "loop_running", "shutdown",
    "usage",     "system",      "rejected",  "closed",   "group",        "dns",          "connect",
    "tls",       "invalid_url", "protocol",  "redirect", "http_status"};
inline constexpr std::array<error_kind, 19> error_kinds_in_order = [] {
  std::array<error_kind, 19> a{};
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<error_kind>(i);
  return a;
}();
}  // namespace detail

/// The kind's stable name ("timeout", "http_status", ...).
[[nodiscard]] constexpr std::string_view error_kind_name(error_kind k) noexcept {
  const auto i = static_cast<std::size_t>(k);
  return i < detail::error_kind_names.size() ? detail::error_kind_names[i] : std::string_view("exception");
}
/// The kind with this name, if any.
[[nodiscard]] constexpr std::optional<error_kind> error_kind_from_name(std::string_view name) noexcept {
  for (std::size_t i = 0; i < detail::error_kind_names.size(); ++i)
    if (detail::error_kind_names[i] == name) return static_cast<error_kind>(i);
  return std::nullopt;
}
/// Every kind, in the enum's order.
[[nodiscard]] constexpr std::span<const error_kind> all_error_kinds() noexcept {
  return detail::error_kinds_in_order;
}

/// Base of every error spindle raises.
///
/// **Thread safety:** immutable after construction; safe to share.
/// **Cancellation:** not applicable.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  /// The error's family in the registry.
  [[nodiscard]] virtual error_kind kind_id() const noexcept = 0;
  /// Its stable, lower-case name (`timeout`, `cancelled`, `wrong_thread`,
  /// ...): error_kind_name(kind_id()) for the library's errors; an
  /// application's error class (kind_id() == error_kind::application,
  /// SPINDLE_DEFINE_APP_ERROR) names its own kind here.
  [[nodiscard]] virtual const char* kind() const noexcept { return error_kind_name(kind_id()).data(); }
};

/// The kind of any exception: a spindle::error's kind_id(), else
/// error_kind::exception (also for a null pointer).
[[nodiscard]] error_kind error_kind_of(const std::exception_ptr& e) noexcept;

/// Defines an application's error class with its own stable kind name
/// (kind_id() is error_kind::application; kind() is KIND_NAME).
#define SPINDLE_DEFINE_APP_ERROR(NAME, KIND_NAME)                                  \
  class NAME : public ::spindle::error {                                           \
   public:                                                                         \
    using ::spindle::error::error;                                                 \
    [[nodiscard]] ::spindle::error_kind kind_id() const noexcept override {        \
      return ::spindle::error_kind::application;                                   \
    }                                                                              \
    [[nodiscard]] const char* kind() const noexcept override { return KIND_NAME; } \
  }

/// Defines a final error class of a registered kind (an error_kind name).
#define SPINDLE_DEFINE_ERROR(NAME, KIND)                                    \
  class NAME : public ::spindle::error {                                    \
   public:                                                                  \
    using ::spindle::error::error;                                          \
    [[nodiscard]] ::spindle::error_kind kind_id() const noexcept override { \
      return ::spindle::error_kind::KIND;                                   \
    }                                                                       \
  }

/// The awaiting task was cancelled. Delivered at a suspension point.
class cancelled_error : public error {
 public:
  cancelled_error() : error("operation cancelled") {}
  using error::error;
  [[nodiscard]] error_kind kind_id() const noexcept override { return error_kind::cancelled; }
};

/// A deadline expired.
SPINDLE_DEFINE_ERROR(timeout_error, timeout);
/// A loop method that is not thread-safe was called from a thread other than
/// the loop's owner. The message names both threads.
SPINDLE_DEFINE_ERROR(wrong_thread_error, wrong_thread);
/// An attempt to run a loop that is already running (or to run a loop while
/// another loop is running on the same thread).
SPINDLE_DEFINE_ERROR(loop_running_error, loop_running);
/// The loop was stopped (or is shutting down) before the operation finished.
SPINDLE_DEFINE_ERROR(shutdown_error, shutdown);
/// The API was used in a way that cannot work (for example awaiting a
/// loop primitive outside any running loop, or joining a task twice).
SPINDLE_DEFINE_ERROR(usage_error, usage);
/// An operating-system call failed; the message carries the call and errno text.
class system_error : public error {
 public:
  system_error(const std::string& what_call, int errno_value);
  [[nodiscard]] error_kind kind_id() const noexcept override { return error_kind::system; }
  [[nodiscard]] int code() const noexcept { return code_; }

 private:
  int code_;
};

}  // namespace spindle
