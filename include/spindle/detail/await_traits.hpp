#pragma once
/// \file
/// What `co_await x` produces, for generic wrappers (with_timeout, ...).

#include <type_traits>
#include <utility>

namespace spindle::detail {

template <class A>
decltype(auto) get_awaiter(A&& a) {
  if constexpr (requires { std::forward<A>(a).operator co_await(); }) {
    return std::forward<A>(a).operator co_await();
  } else if constexpr (requires { operator co_await(std::forward<A>(a)); }) {
    return operator co_await(std::forward<A>(a));
  } else {
    return std::forward<A>(a);
  }
}

/// The type of `co_await std::declval<A>()`.
template <class A>
using await_result_t = decltype(get_awaiter(std::declval<A>()).await_resume());

/// How a wrapper coroutine keeps an awaitable argument: rvalues by value
/// (moved into the frame), lvalues by reference.
template <class A>
using stored_awaitable_t = std::conditional_t<std::is_lvalue_reference_v<A>, A, std::remove_cvref_t<A>>;

}  // namespace spindle::detail
