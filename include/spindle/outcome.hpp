#pragma once
/// \file
/// outcome<T>: a value or the exception that took its place.

#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "spindle/error.hpp"

namespace spindle {

namespace detail {
/// The stable kind name of an exception: spindle::error::kind() (an
/// application error's own name too), else "exception".
[[nodiscard]] std::string error_kind_name_of(const std::exception_ptr& e);
/// An exception's what() text, or "unknown exception".
[[nodiscard]] std::string error_message(const std::exception_ptr& e);
}  // namespace detail

/// The result of one item of gather_settled / as_completed.
///
/// **Thread safety:** a plain value type.
/// **Cancellation:** not applicable.
template <class T>
class outcome {
 public:
  outcome(T value) : v_(std::in_place_index<0>, std::move(value)) {}           // NOLINT: implicit on purpose
  outcome(std::exception_ptr e) : v_(std::in_place_index<1>, std::move(e)) {}  // NOLINT

  [[nodiscard]] bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  /// The value; rethrows the error when there is none.
  T& value() & {
    if (!ok()) std::rethrow_exception(std::get<1>(v_));
    return std::get<0>(v_);
  }
  T&& value() && { return std::move(value()); }
  const T& value() const& {
    if (!ok()) std::rethrow_exception(std::get<1>(v_));
    return std::get<0>(v_);
  }
  /// The exception (null when ok()).
  [[nodiscard]] std::exception_ptr error() const noexcept { return ok() ? nullptr : std::get<1>(v_); }
  /// The failure's kind in the registry (error_kind::exception when ok()).
  [[nodiscard]] spindle::error_kind kind_id() const noexcept {
    return ok() ? spindle::error_kind::exception : error_kind_of(std::get<1>(v_));
  }
  /// Its stable name; empty when ok().
  [[nodiscard]] std::string error_kind() const {
    return ok() ? "" : detail::error_kind_name_of(std::get<1>(v_));
  }
  [[nodiscard]] std::string error_message() const {
    return ok() ? "" : detail::error_message(std::get<1>(v_));
  }

 private:
  std::variant<T, std::exception_ptr> v_;
};

template <>
class outcome<void> {
 public:
  outcome() noexcept = default;
  outcome(std::exception_ptr e) noexcept : e_(std::move(e)) {}  // NOLINT
  [[nodiscard]] bool ok() const noexcept { return !e_; }
  explicit operator bool() const noexcept { return ok(); }
  void value() const {
    if (e_) std::rethrow_exception(e_);
  }
  [[nodiscard]] std::exception_ptr error() const noexcept { return e_; }
  [[nodiscard]] spindle::error_kind kind_id() const noexcept {
    return ok() ? spindle::error_kind::exception : error_kind_of(e_);
  }
  [[nodiscard]] std::string error_kind() const { return ok() ? "" : detail::error_kind_name_of(e_); }
  [[nodiscard]] std::string error_message() const { return ok() ? "" : detail::error_message(e_); }

 private:
  std::exception_ptr e_;
};

}  // namespace spindle
