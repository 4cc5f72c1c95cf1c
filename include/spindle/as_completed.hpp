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

/// What a completion_stream's driver owns (shared with the stream): the
/// inputs (a view owning an rvalue range, referring to an lvalue one), the
/// factory, the options and the output channel.
template <class V, class F, class T>
struct stream_state {
  V inputs;
  F fn;
  fanout_options opts;
  channel<completion<T>> out;
  stream_state(V v, F f, fanout_options o)
      : inputs(std::move(v)),
        fn(std::move(f)),
        opts(std::move(o)),
        out(opts.limit == 0 ? static_cast<std::size_t>(-1) : opts.limit, "as_completed") {}
  auto source() { return range_source(std::ranges::begin(inputs), std::ranges::end(inputs)); }
};

/// The same over a channel of inputs (which the caller owns).
template <class I, class F, class T>
struct channel_stream_state {
  channel<I>* inputs;
  F fn;
  fanout_options opts;
  channel<completion<T>> out;
  channel_stream_state(channel<I>& in, F f, fanout_options o)
      : inputs(&in), fn(std::move(f)), opts(std::move(o)), out(opts.limit, "as_completed") {}
  auto source() { return channel_source<I>(*inputs); }
};

/// Runs the fan-out (impl/fanout.hpp) with its results sent to the stream's
/// channel, which is closed at the end (also on failure or cancellation).
template <class T, class S>
task<void> stream_driver(std::shared_ptr<S> s) {
  using Source = decltype(s->source());
  using Sink = send_sink<T, completion<T>>;
  fanout_state<T, Source, Sink, decltype(s->fn)> st(s->source(), Sink(s->out), s->fn, s->opts);
  try {
    co_await run_fanout(st);
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
  auto driver = loop.spawn(detail::stream_driver<T>(state), "as_completed");
  channel<completion<T>>* out = &state->out;
  return completion_stream<T>(std::move(state), out, std::move(driver));
}

}  // namespace spindle
