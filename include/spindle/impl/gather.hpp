#pragma once
// Template bodies of the fan-out family (included from gather.hpp, after
// fanout_options). The range fan-outs (gather, gather_settled) and
// as_completed share one worker: impl/fanout.hpp.

#include <cstddef>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "spindle/impl/fanout.hpp"
#include "spindle/task.hpp"
#include "spindle/task_group.hpp"

namespace spindle {

namespace detail {

template <class T>
task<void> store_into(task<T> t, std::optional<stored_t<T>>& slot) {
  if constexpr (std::is_void_v<T>) {
    co_await std::move(t);
    slot.emplace();
  } else {
    slot.emplace(co_await std::move(t));
  }
}

template <class... Ts, std::size_t... I>
task<std::tuple<stored_t<Ts>...>> gather_tuple(std::index_sequence<I...>, task<Ts>... ts) {
  std::tuple<std::optional<stored_t<Ts>>...> slots;
  co_await with_task_group([&](task_group& g) -> task<void> {
    (g.spawn(store_into<Ts>(std::move(ts), std::get<I>(slots))), ...);
    co_return;
  });
  co_return std::tuple<stored_t<Ts>...>(std::move(*std::get<I>(slots))...);
}

/// The factory for a vector of ready-made tasks: hands each one out once.
struct take_task {
  template <class T>
  task<T> operator()(task<T>& t) const noexcept {
    return std::move(t);
  }
};

}  // namespace detail

}  // namespace spindle
