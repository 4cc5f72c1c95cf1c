#pragma once
// The fan-out worker behind gather, gather_settled and as_completed (over a
// range or a channel of inputs); included from gather.hpp.
//
// A fan-out is a *source* handing out the next input, a factory making one
// task per input, and a *sink* taking each item's result. Workers in a task
// group repeat: take the next input, run its task, deliver the result, until
// the source is dry. Sources: range_source (an iterator pair; taking an input
// never waits) and channel_source (receives from a spindle::channel). Sinks:
// value_slots (gather: values in input order, an item's failure fails the
// worker and so the group), outcome_slots (gather_settled: outcomes in input
// order) and send_sink (as_completed: each completion sent to the output
// channel, waiting while it is full, which bounds memory when the consumer
// lags).
//
// The window grows with the work: the first worker starts alone and another
// is started only when an item suspends and no worker is idle, up to
// `limit`. Items that finish without suspending run one after another in one
// worker (no task per item, no frame but the item's own).

#include <coroutine>
#include <cstddef>
#include <exception>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "spindle/cancel_scope.hpp"
#include "spindle/channel.hpp"
#include "spindle/outcome.hpp"
#include "spindle/retry.hpp"
#include "spindle/task.hpp"
#include "spindle/task_group.hpp"

namespace spindle::detail {

template <class F, class Item>
using fanout_result_t = typename std::invoke_result_t<F&, Item>::value_type;

template <class T>
using stored_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

/// The fan-out's retry policy for one item's retry(), not copied: the
/// fan-out's state outlives every item (a non-owning aliasing pointer, so no
/// reference count either).
inline std::shared_ptr<const retry_policy> borrowed_policy(const retry_policy& p) noexcept {
  return {std::shared_ptr<const retry_policy>{}, &p};
}

/// Bounds one item by the per-item timeout. Not a coroutine: without a
/// timeout the item's own task is returned (no frame of its own).
template <class T>
task<T> run_item(task<T> t, std::optional<duration> per_item_timeout) {
  if (per_item_timeout) return with_timeout(*per_item_timeout, std::move(t));
  return t;
}

/// The task of an input the worker holds (`input` outlives the task): with
/// the retry policy, each attempt calls the factory again.
template <class T, class F, class In>
task<T> make_held_item(F& fn, In& input, const fanout_options& opts) {
  if (opts.retry) {
    auto attempt = [&fn, &input, &opts] { return run_item(fn(input), opts.per_item_timeout); };
    return retry(borrowed_policy(*opts.retry), attempt);
  }
  return run_item(fn(input), opts.per_item_timeout);
}

// ---- Sources: "next input" ----
//
//   typename S::slot                      a worker's storage for the input it runs
//   co_await s.next(slot) -> bool         takes the next input; false: no more
//   s.make<T>(slot, fn, opts, failure)    the task of the input just taken;
//                                         a throw is caught into `failure`
//                                         (that item's failure)
//   s.may_have_more()                     worth starting another worker

/// Inputs from a range: taking one never waits. The factory gets `*it` (a
/// retry: a copy of it, kept by the worker, for every attempt).
template <class It, class Sentinel>
class range_source {
 public:
  using input_type = std::remove_cvref_t<std::iter_reference_t<It>>;
  using slot = std::optional<input_type>;  // engaged only for retries

  range_source(It it, Sentinel end) : it_(std::move(it)), end_(std::move(end)) {}

  struct next_awaiter {
    const range_source* s;
    [[nodiscard]] bool await_ready() const noexcept { return true; }
    void await_suspend(std::coroutine_handle<>) const noexcept {}
    [[nodiscard]] bool await_resume() const { return s->it_ != s->end_; }
  };
  next_awaiter next(slot&) noexcept { return {this}; }
  [[nodiscard]] bool may_have_more() const { return it_ != end_; }

  /// The task of `*it`; the input is consumed even when the factory throws.
  /// (The common case inline, the others out of line.)
  template <class T, class F>
  [[gnu::always_inline]] inline task<T> make(slot& held, F& fn, const fanout_options& opts,
                                             std::exception_ptr& failure) {
    task<T> t;
    try {
      if (!opts.retry && !opts.per_item_timeout) [[likely]] {
        t = fn(*it_);
      } else {
        t = make_bounded<T>(held, fn, opts);
      }
    } catch (...) {
      failure = std::current_exception();
    }
    ++it_;
    return t;
  }

 private:
  template <class T, class F>
  [[gnu::noinline]] task<T> make_bounded(slot& held, F& fn, const fanout_options& opts) {
    if (!opts.retry) return run_item(fn(*it_), opts.per_item_timeout);
    if constexpr (std::is_copy_constructible_v<input_type>) {
      held.emplace(*it_);
      return make_held_item<T>(fn, *held, opts);
    } else {
      throw usage_error("fan-out retry needs copyable inputs (each attempt remakes the task)");
    }
  }

  It it_;
  Sentinel end_;
};

/// Inputs received from a channel until it is closed and drained. The
/// factory gets the received value as an lvalue (kept by the worker while
/// its item runs).
template <class I>
class channel_source {
 public:
  using slot = std::optional<I>;

  explicit channel_source(channel<I>& in) noexcept : in_(&in) {}

  struct next_awaiter {
    slot* held;
    typename channel<I>::receive_awaiter receive;
    [[nodiscard]] bool await_ready() { return receive.await_ready(); }
    bool await_suspend(std::coroutine_handle<> h) { return receive.await_suspend(h); }
    bool await_resume() {
      *held = receive.await_resume();
      return held->has_value();
    }
  };
  next_awaiter next(slot& held) { return {&held, in_->receive()}; }
  [[nodiscard]] bool may_have_more() const noexcept { return !in_->closed() || in_->size() != 0; }

  template <class T, class F>
  task<T> make(slot& held, F& fn, const fanout_options& opts, std::exception_ptr& failure) {
    try {
      return make_held_item<T>(fn, *held, opts);
    } catch (...) {
      failure = std::current_exception();
    }
    return {};
  }

 private:
  channel<I>* in_;
};

// ---- Sinks: where an item's result goes ----
//
//   S::settle               an item's failure is its outcome (else it fails the fan-out)
//   S::synchronous          deliveries never wait (store(); else deliver() is awaited)
//   S::what                 for current_task()'s message
//   store/deliver(index, T&&) (void T: (index)), store/deliver_failure(index, exception_ptr)

/// gather: the values in input order; a failure is not stored (it fails the
/// worker, so the group cancels the rest and rethrows it).
template <class T>
class value_slots {
 public:
  using value_type = stored_t<T>;
  static constexpr bool settle = false;
  static constexpr bool synchronous = true;
  static constexpr const char* what = "gather";

  void reserve(std::size_t n) { slots_.resize(n); }
  template <class V>
  void store(std::size_t index, V&& v) {
    if (slots_.size() <= index) [[unlikely]]
      grow(index);
    if constexpr (direct) {
      slots_[index] = std::forward<V>(v);
    } else {
      slots_[index].emplace(std::forward<V>(v));
    }
    ++filled_;
  }
  void store(std::size_t index) { store(index, value_type{}); }
  void store_failure(std::size_t, std::exception_ptr) noexcept {}

  /// The values; cancelled_error if one is missing (only when the group was
  /// cancelled, which rethrows first).
  std::vector<value_type> take() {
    if (filled_ != slots_.size()) throw cancelled_error();
    if constexpr (direct) {
      return std::move(slots_);
    } else {
      std::vector<value_type> out;
      out.reserve(slots_.size());
      for (auto& s : slots_) out.push_back(std::move(*s));
      return out;
    }
  }

 private:
  [[gnu::noinline]] void grow(std::size_t index) { slots_.resize(index + 1); }
  // Values are stored in place when they can be default-constructed.
  static constexpr bool direct =
      std::is_default_constructible_v<value_type> && std::is_move_assignable_v<value_type>;
  std::vector<std::conditional_t<direct, value_type, std::optional<value_type>>> slots_;
  std::size_t filled_ = 0;
};

/// gather_settled: every outcome in input order. Slots start as a null
/// error (a placeholder, overwritten once; cheaper than an optional and a
/// second pass).
template <class T>
class outcome_slots {
 public:
  static constexpr bool settle = true;
  static constexpr bool synchronous = true;
  static constexpr const char* what = "gather";

  void reserve(std::size_t n) { slots_.resize(n, placeholder()); }
  template <class... V>
  void store(std::size_t index, V&&... v) {
    if (slots_.size() <= index) [[unlikely]]
      grow(index);
    outcome<T>& slot = slots_[index];
    if constexpr (nothrow_outcome<V...>) {
      // (a placeholder holds no error to destroy: cheaper than the
      // variant's assignment)
      std::destroy_at(&slot);
      std::construct_at(&slot, std::forward<V>(v)...);
    } else {
      slot = outcome<T>(std::forward<V>(v)...);
    }
    ++filled_;
  }
  void store_failure(std::size_t index, std::exception_ptr e) { store(index, std::move(e)); }

  std::vector<outcome<T>> take() {
    if (filled_ != slots_.size()) throw cancelled_error();
    return std::move(slots_);
  }

 private:
  static outcome<T> placeholder() noexcept { return outcome<T>(std::exception_ptr()); }
  [[gnu::noinline]] void grow(std::size_t index) { slots_.resize(index + 1, placeholder()); }
  // Making outcome<T>(v...) cannot throw (outcome's constructors are not
  // marked noexcept, but only construct a T or move an exception_ptr).
  template <class... V>
  static constexpr bool nothrow_outcome = [] {
    if constexpr (sizeof...(V) == 1 && (std::is_same_v<std::remove_cvref_t<V>, std::exception_ptr> && ...)) {
      return true;
    } else if constexpr (std::is_void_v<T>) {
      return sizeof...(V) == 0;
    } else {
      return std::is_nothrow_constructible_v<T, V&&...> && std::is_nothrow_move_constructible_v<T>;
    }
  }();
  std::vector<outcome<T>> slots_;
  std::size_t filled_ = 0;
};

/// as_completed: each outcome sent to `out` as a Message{index, outcome}
/// (waiting while it is full: the window then stops moving).
template <class T, class Message>
class send_sink {
 public:
  static constexpr bool settle = true;
  static constexpr bool synchronous = false;
  static constexpr const char* what = "as_completed";

  explicit send_sink(channel<Message>& out) noexcept : out_(&out) {}
  template <class... V>
  auto deliver(std::size_t index, V&&... v) {
    Message m{index, outcome<T>(std::forward<V>(v)...)};
    return out_->send(std::move(m));
  }
  auto deliver_failure(std::size_t index, std::exception_ptr e) { return deliver(index, std::move(e)); }

 private:
  channel<Message>* out_;
};

// ---- The worker ----

/// One fan-out's shared state (all its workers run on one loop thread).
template <class T, class Source, class Sink, class F>
struct fanout_state {
  fanout_state(Source src, Sink snk, F& f, const fanout_options& o)
      : source(std::move(src)), sink(std::move(snk)), fn(f), opts(o) {}

  Source source;
  Sink sink;
  F& fn;
  const fanout_options& opts;
  std::size_t next_index = 0;
  std::size_t max_workers = 0;  // the limit (0: none)
  std::size_t workers = 0;      // started
  std::size_t idle = 0;         // started and holding no input (not yet run, or waiting for one)
  task_group* group = nullptr;
};

/// Awaits a task that has already started and suspended: its end resumes
/// the awaiting worker. The result stays in the task's promise.
template <class T>
struct until_done {
  typename task<T>::handle_type h;
  [[nodiscard]] bool await_ready() const noexcept { return h.done(); }
  void await_suspend(std::coroutine_handle<> worker) const noexcept { h.promise().set_continuation(worker); }
  void await_resume() const noexcept {}
};

template <class T>
until_done<T> await_end(const task<T>& t) noexcept {
  return {t.handle()};
}

template <class T, class Source, class Sink, class F>
task<void> fanout_worker(fanout_state<T, Source, Sink, F>& st);

/// Starts one more worker if the window may grow and none is idle (a failure
/// to start one only leaves the window smaller).
template <class T, class Source, class Sink, class F>
void grow_window(fanout_state<T, Source, Sink, F>& st) noexcept {
  if (st.idle != 0 || st.workers >= st.max_workers || !st.source.may_have_more()) return;
  try {
    st.group->spawn(fanout_worker(st), "fanout-worker");
    ++st.workers;
    ++st.idle;
  } catch (...) {  // NOLINT(bugprone-empty-catch): the workers running still finish the fan-out
  }
}

/// A window slot: takes the next input, runs its task, delivers the result,
/// repeats until the source is dry.
///
/// The item is resumed directly (not awaited): when it ends without
/// suspending, the worker goes on with no suspension of its own; when it
/// suspends, the window may grow by one worker, and this one waits for the
/// item's end. A failure (also the factory's) is the item's outcome for a
/// settling sink; otherwise it fails the worker (and so the group). Once the
/// fan-out is cancelled, what items throw is a consequence, not an outcome:
/// the worker ends with cancelled_error.
template <class T, class Source, class Sink, class F>
task<void> fanout_worker(fanout_state<T, Source, Sink, F>& st) {
  typename Source::slot held{};
  for (;;) {
    const bool taken = co_await st.source.next(held);
    --st.idle;
    if (!taken) co_return;
    const std::size_t index = st.next_index++;
    std::exception_ptr failure;
    task<T> item = st.source.template make<T>(held, st.fn, st.opts, failure);
    if (!failure && !item.valid()) [[unlikely]] {
      try {
        throw_invalid_task();
      } catch (...) {
        failure = std::current_exception();
      }
    }
    if (!failure) {
      if (!item.done()) item.handle().resume();
      if (!item.done()) {
        grow_window(st);
        co_await await_end(item);
      }
      if (item.handle().promise().exception()) failure = item.handle().promise().exception();
    }
    held.reset();
    if (failure) {
      if (current_task(Sink::what).cancel_requested()) throw cancelled_error();
      if constexpr (!Sink::settle) {
        std::rethrow_exception(failure);
      } else if constexpr (Sink::synchronous) {
        st.sink.store_failure(index, std::move(failure));
      } else {
        auto delivery = st.sink.deliver_failure(index, std::move(failure));
        co_await delivery;
      }
    } else if constexpr (std::is_void_v<T>) {
      if constexpr (Sink::synchronous) {
        st.sink.store(index);
      } else {
        auto delivery = st.sink.deliver(index);
        co_await delivery;
      }
    } else {
      if constexpr (Sink::synchronous) {
        st.sink.store(index, item.handle().promise().take());
      } else {
        auto delivery = st.sink.deliver(index, item.handle().promise().take());
        co_await delivery;
      }
    }
    ++st.idle;
  }
}

/// Runs the fan-out of `st` in a task group: one worker to start with, more
/// as items suspend (grow_window), at most the limit.
template <class T, class Source, class Sink, class F>
task<void> run_fanout(fanout_state<T, Source, Sink, F>& st) {
  st.max_workers = st.opts.limit == 0 ? std::numeric_limits<std::size_t>::max() : st.opts.limit;
  co_await with_task_group([&st](task_group& g) -> task<void> {
    st.group = &g;
    st.workers = 1;
    st.idle = 1;
    g.spawn(fanout_worker(st), "fanout-worker");
    co_return;
  });
}

/// gather / gather_settled over a range: the sink's values in input order.
/// (A coroutine owning `fn` and `opts`: the callers return its task.)
template <class Sink, class R, class F>
auto fanout_into(R&& inputs, F fn, fanout_options opts) -> task<decltype(std::declval<Sink&>().take())> {
  using T = fanout_result_t<F, std::ranges::range_reference_t<R>>;
  using Source = range_source<std::ranges::iterator_t<R>, std::ranges::sentinel_t<R>>;
  fanout_state<T, Source, Sink, F> st(Source(std::ranges::begin(inputs), std::ranges::end(inputs)), Sink(),
                                      fn, opts);
  if constexpr (std::ranges::sized_range<R>)
    st.sink.reserve(static_cast<std::size_t>(std::ranges::size(inputs)));
  co_await run_fanout(st);
  co_return st.sink.take();
}

}  // namespace spindle::detail
