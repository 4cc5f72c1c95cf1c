#pragma once
/// \file
/// as_completed: the outcomes of a fan-out, as the items finish.

#include <cstddef>
#include <memory>
#include <optional>
#include <ranges>
#include <utility>

#include "spindle/channel.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/gather.hpp"

namespace spindle {

/// One finished item: its input position and its outcome.
template <class T>
struct completion {
  std::size_t index;
  outcome<T> result;
};

namespace detail {

template <class V, class F, class T>
struct stream_state {
  V inputs;  // owns rvalue ranges (owning_view), refers to lvalues (ref_view)
  F fn;
  fanout_options opts;
  channel<completion<T>> out;
  stream_state(V v, F f, fanout_options o)
      : inputs(std::move(v)),
        fn(std::move(f)),
        opts(o),
        out(o.limit == 0 ? static_cast<std::size_t>(-1) : o.limit, "as_completed") {}
};

/// Workers deliver into the channel (waiting when the consumer lags: the
/// window then stops moving, which bounds memory).
template <class It, class Sentinel, class F, class T>
struct stream_fanout_state : fanout_state<It, Sentinel, F, T> {
  channel<completion<T>>* out;
  auto deliver(std::size_t index, outcome<T>&& o) { return out->send(completion<T>{index, std::move(o)}); }
};

template <class T, class S>
task<void> stream_driver(std::shared_ptr<S> s) {
  using It = std::ranges::iterator_t<decltype(s->inputs)>;
  using Sentinel = std::ranges::sentinel_t<decltype(s->inputs)>;
  const std::size_t workers = window_size(s->inputs, s->opts);
  stream_fanout_state<It, Sentinel, decltype(s->fn), T> st{
      {std::ranges::begin(s->inputs), std::ranges::end(s->inputs), s->fn, s->opts, 0, {}}, &s->out};
  try {
    co_await run_window<true, T>(st, workers);
  } catch (...) {
    s->out.close();
    throw;
  }
  s->out.close();
}

/// as_completed over a channel: up to `limit` workers, each receiving the
/// next input until the channel is closed and drained. Workers are started
/// as inputs arrive (one more whenever none is left waiting), not all at
/// once: memory follows the work in flight, not the limit (a limit of a
/// million with one input starts two workers).
template <class I, class F, class T>
struct channel_stream_state {
  channel<I>* inputs;
  F fn;
  fanout_options opts;
  channel<completion<T>> out;
  std::size_t next_index = 0;
  task_group* group = nullptr;  // the driver's, for starting workers
  std::size_t workers = 0;      // started
  std::size_t waiting = 0;      // waiting for an input
  channel_stream_state(channel<I>& in, F f, fanout_options o)
      : inputs(&in), fn(std::move(f)), opts(o), out(o.limit, "as_completed") {}
};

// Not a coroutine: the item's task (or the retry's) is awaited directly by
// the worker. `input` lives in the worker's frame for the whole await.
template <class T, class S>
task<T> channel_item(S& s, auto& input) {
  if (s.opts.retry) {
    auto attempt = [&s, &input] { return run_item(s.fn(input), s.opts.per_item_timeout); };
    return retry(detail::borrowed_policy(*s.opts.retry), attempt);
  }
  return run_item(s.fn(input), s.opts.per_item_timeout);
}

template <class T, class S>
task<void> channel_worker(S& s) {
  for (;;) {
    ++s.waiting;
    auto input = co_await s.inputs->receive();
    --s.waiting;
    if (!input) co_return;
    if (s.waiting == 0 && s.workers < s.opts.limit) {  // keep one worker waiting for the next input
      ++s.workers;
      s.group->spawn(channel_worker<T>(s), "fanout-worker");
    }
    const std::size_t index = s.next_index++;
    std::optional<outcome<T>> o;
    std::exception_ptr failure;
    try {
      if constexpr (std::is_void_v<T>) {
        co_await channel_item<T>(s, *input);
        o.emplace();
      } else {
        o.emplace(co_await channel_item<T>(s, *input));
      }
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) {
      if (current_task("as_completed").cancel_requested()) throw cancelled_error();
      o.emplace(failure);
    }
    // (built outside the co_await expression: an aggregate temporary there trips g++ 12)
    completion<T> done{index, std::move(*o)};
    co_await s.out.send(std::move(done));
  }
}

template <class T, class S>
task<void> channel_driver(std::shared_ptr<S> s) {
  try {
    co_await with_task_group([&](task_group& g) -> task<void> {
      s->group = &g;
      s->workers = 1;
      g.spawn(channel_worker<T>(*s), "fanout-worker");
      co_return;
    });
  } catch (...) {
    s->out.close();
    throw;
  }
  s->out.close();
}

}  // namespace detail

/// The stream returned by as_completed: `co_await next()` until nullopt.
///
/// **Thread safety:** one loop's tasks only.
/// **Cancellation:** next() is a cancellation point. Destroying the stream
/// before the end cancels the items still running.
template <class T>
class completion_stream {
 public:
  completion_stream(std::shared_ptr<void> state, channel<completion<T>>* out, join_handle<void> driver)
      : state_(std::move(state)), out_(out), driver_(std::move(driver)) {}
  completion_stream(completion_stream&&) noexcept = default;
  completion_stream& operator=(completion_stream&&) = delete;
  ~completion_stream() {
    if (driver_.valid() && !driver_.done()) driver_.cancel();
  }

  /// The next finished item, or nullopt when every item has been delivered.
  [[nodiscard]] auto next() { return out_->receive(); }

 private:
  std::shared_ptr<void> state_;  // keeps the inputs, the factory and the channel alive for the driver
  channel<completion<T>>* out_;
  join_handle<void> driver_;
};

/// Runs `fn(input)` for every input (same options as gather_settled) and
/// yields `completion{index, outcome}` in the order the items finish. Every
/// input is delivered exactly once. An lvalue range must outlive the stream.
///
///     auto stream = as_completed(urls, fetch, {.limit = 64});
///     while (auto done = co_await stream.next()) use(done->index, done->result);
template <std::ranges::viewable_range R, class F>
auto as_completed(R&& inputs, F fn, fanout_options opts = {}) {
  using V = std::views::all_t<R>;
  using T = detail::fanout_result_t<F, std::ranges::range_reference_t<V>>;
  using S = detail::stream_state<V, F, T>;
  auto state = std::make_shared<S>(std::views::all(std::forward<R>(inputs)), std::move(fn), opts);
  event_loop& loop = detail::current_task("as_completed").loop();
  auto driver = loop.spawn(detail::stream_driver<T>(state), "as_completed");
  channel<completion<T>>* out = &state->out;
  return completion_stream<T>(std::move(state), out, std::move(driver));
}

/// as_completed over inputs that arrive over time (read from a pipe, a
/// socket, a queue): at most `opts.limit` items run at once (a limit is
/// required), each worker taking the next input from `inputs` as it frees
/// up; the stream ends once `inputs` is closed and every input received has
/// been delivered. `fn` gets the input as an lvalue (called again for each
/// retry attempt). Indices count inputs in the order they were received.
/// The channel must outlive the stream; inputs still in it when the stream
/// is destroyed stay there.
///
///     channel<std::string> urls(1024);   // filled by a reader task
///     auto stream = as_completed(urls, fetch, {.limit = 64});
template <class I, class F>
auto as_completed(channel<I>& inputs, F fn, fanout_options opts) {
  if (opts.limit == 0) throw usage_error("as_completed over a channel needs a limit (fanout_options::limit)");
  using T = detail::fanout_result_t<F, I&>;
  using S = detail::channel_stream_state<I, F, T>;
  auto state = std::make_shared<S>(inputs, std::move(fn), opts);
  event_loop& loop = detail::current_task("as_completed").loop();
  auto driver = loop.spawn(detail::channel_driver<T>(state), "as_completed");
  channel<completion<T>>* out = &state->out;
  return completion_stream<T>(std::move(state), out, std::move(driver));
}

}  // namespace spindle
