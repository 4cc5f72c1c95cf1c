// The fetch engine (include/spindle/http/fetch.hpp). A reader task takes
// the source's inputs in batches into a bounded channel; as_completed's
// window of workers (made as inputs arrive) runs one input each: its
// attempts under the HTTP retry policy, each behind the per-origin gate
// and the rate limiter, bounded by the per-attempt timeout. Every input
// ends in exactly one deliver(): a stop (stop(), the deadline, cancelling
// run()) cancels the reader and the window; in-flight inputs end as
// `cancelled`, inputs read but not started are drained from the channel as
// `cancelled`, and after the deadline a finite source is read to its end.

#include "spindle/http/fetch.hpp"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <unordered_map>

#include "spindle/as_completed.hpp"
#include "spindle/cancel_scope.hpp"
#include "spindle/channel.hpp"
#include "spindle/diagnostics.hpp"
#include "spindle/error.hpp"
#include "spindle/event.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/http/url.hpp"
#include "spindle/rate_limiter.hpp"
#include "spindle/retry.hpp"
#include "spindle/semaphore.hpp"
#include "spindle/sleep.hpp"

namespace spindle::http {

namespace {

// Where an input has a scheme: a letter, then letters, digits, '+', '-' or
// '.', then ":/" (curl's rule). "127.0.0.1:8080/f", "localhost:8080" and
// "example.com/x" have none.
bool has_scheme(std::string_view text) {
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (text.empty() || !alpha(text[0])) return false;
  std::size_t i = 1;
  while (i < text.size() && (alpha(text[i]) || (text[i] >= '0' && text[i] <= '9') || text[i] == '+' ||
                             text[i] == '-' || text[i] == '.'))
    ++i;
  return text.substr(i).starts_with(":/");
}

// The URL an input names: as given, or, without a scheme (host[:port]/path),
// http:// + input, as curl does. nullopt and `message` when it is none.
std::optional<url> url_of(const fetch_input& in, std::string& message) {
  if (!in.invalid.empty()) {
    message = in.invalid;
    return std::nullopt;
  }
  const bool guessed = !has_scheme(in.url);
  try {
    return url::parse(guessed ? "http://" + in.url : in.url);
  } catch (const std::exception& e) {
    message = e.what();
    if (guessed) message += " (no scheme given, so http:// was assumed)";
  }
  return std::nullopt;
}

// An input on its way through the window: `seq` is its place in the
// source's order (for ordered delivery).
struct queued {
  fetch_input input;
  std::uint64_t seq = 0;
};

// Per input, across its attempts.
struct item_state {
  unsigned attempts = 0;
  int status = 0;
  std::uint64_t bytes = 0;
  std::string final_url;
  std::string body;
  headers response_headers;
  std::string path;
};

// The per-origin limit: a semaphore per origin with attempts waiting or
// running, removed when its last user leaves (memory follows the origins
// in use, not every origin ever seen).
struct host_gate {
  explicit host_gate(std::size_t n) : permits(n, "fetch per-host") {}
  semaphore permits;
  std::size_t users = 0;
};
using gate_map = std::unordered_map<std::string, std::unique_ptr<host_gate>>;

class gate_pass {
 public:
  gate_pass(gate_map& m, std::string key, std::size_t limit) : map_(&m), key_(std::move(key)) {
    auto& g = m[key_];
    if (!g) g = std::make_unique<host_gate>(limit);
    gate_ = g.get();
    ++gate_->users;
  }
  gate_pass(const gate_pass&) = delete;
  gate_pass& operator=(const gate_pass&) = delete;
  ~gate_pass() {
    if (held) gate_->permits.release();
    if (--gate_->users == 0) map_->erase(key_);
  }
  [[nodiscard]] semaphore& permits() noexcept { return gate_->permits; }
  bool held = false;

 private:
  gate_map* map_;
  std::string key_;
  host_gate* gate_;
};

// A slot of a shared per-origin limit, given back when the attempt ends.
class shared_pass {
 public:
  shared_pass(fetch_limits& l, std::string origin) : limits_(&l), origin_(std::move(origin)) {}
  shared_pass(const shared_pass&) = delete;
  shared_pass& operator=(const shared_pass&) = delete;
  ~shared_pass() { limits_->release_host(origin_); }

 private:
  fetch_limits* limits_;
  std::string origin_;
};

}  // namespace

struct fetcher::impl {
  fetch_options o;
  std::unique_ptr<client> own;
  client* c;
  std::shared_ptr<const retry_policy> policy;  // one for every input: not copied per input
  std::function<bool(const std::exception_ptr&)> base_retryable;
  std::optional<rate_limiter> rate;
  request_options ro;
  gate_map gates;
  fetch_statistics st;

  event_loop* loop = nullptr;
  fetch_source* source = nullptr;
  fetch_sink* sink = nullptr;
  channel<queued> inputs{std::max<std::size_t>(o.input_buffer, 1), "fetch inputs"};
  std::uint64_t next_seq = 0;
  event idle{"fetch idle"};
  bool ran = false;

  // Ordered delivery: results held until every earlier input's is out.
  std::uint64_t deliver_seq = 0;
  std::deque<std::optional<fetch_result>> held;
  event room{"fetch reorder room"};
  std::size_t reorder_limit = 0;

  // Stopping.
  bool stopping = false;
  bool stopped_by_caller = false;  // stop(): no deadline drain
  bool draining = false;           // the deadline drain: read on after the stop
  bool read_pending = false;       // a read of a non-finite source was cut off
  std::string stop_reason;
  join_handle<void> reader, window;

  impl(client* shared, fetch_options opts) : o(std::move(opts)), c(shared) {
    if (c == nullptr) {
      client_options co = o.client;
      const std::size_t width = std::max<std::size_t>(o.concurrency, 1);
      const std::size_t per_host = o.per_host != 0 ? o.per_host : (o.limits ? o.limits->per_host() : 0);
      co.max_connections_per_origin = per_host != 0 ? per_host : width;
      co.max_connections_total = std::max(width, co.max_connections_per_origin);
      co.connect_timeout = o.timeout;
      co.header_timeout = o.timeout;
      co.request_timeout = o.timeout;
      co.max_response_bytes = o.max_body;
      own = std::make_unique<client>(std::move(co));
      c = own.get();
    }
    ro.timeout = o.timeout;
    ro.keep_body = o.keep_body && o.body_store == nullptr;
    ro.max_response_bytes = o.max_body;
    // Non-idempotent methods get one attempt unless retry_unsafe (the policy sees to it).
    retry_policy p = http_retry_policy(o.method, o.retries + 1, o.backoff, o.retry_unsafe);
    base_retryable = std::move(p.retryable);
    p.retryable = [this](const std::exception_ptr& e) { return retryable(e); };
    policy = std::make_shared<const retry_policy>(std::move(p));
    if (o.rate > 0 && !o.limits) rate.emplace(o.rate, std::max(1.0, o.rate / 10), "fetch rate");
    reorder_limit = o.reorder_limit != 0 ? o.reorder_limit : 4 * std::max<std::size_t>(o.concurrency, 1);
  }

  // A Retry-After beyond max_retry_after ends the input with its status
  // instead of a long wait.
  bool retryable(const std::exception_ptr& e) const {
    try {
      std::rethrow_exception(e);
    } catch (const http_status_error& s) {
      if (s.retry_after() && *s.retry_after() > o.max_retry_after) return false;
    } catch (...) {
    }
    return base_retryable ? base_retryable(e) : false;
  }

  void request_stop(std::string reason) {
    if (stopping) return;
    stopping = true;
    stop_reason = std::move(reason);
    if (reader.valid() && !reader.done()) reader.cancel();
    if (window.valid() && !window.done()) window.cancel();
    room.set();  // inputs waiting for reorder room end as cancelled
  }

  [[nodiscard]] double ms_since(time_point t) const {
    return std::chrono::duration<double, std::milli>(loop->now() - t).count();
  }

  void deliver(fetch_result&& r, std::uint64_t seq) {
    if (r.ok) {
      ++st.ok;
    } else {
      ++st.failed;
      ++st.errors[r.error_kind];
    }
    if (r.attempts > 1) st.retries += r.attempts - 1;
    if (r.attempts > 0) st.latency.add(r.elapsed_ms);
    if (!o.ordered) {
      sink->deliver(std::move(r));
      return;
    }
    const std::uint64_t at = seq - deliver_seq;
    if (held.size() <= at) held.resize(at + 1);
    held[at].emplace(std::move(r));
    bool moved = false;
    while (!held.empty() && held.front()) {
      sink->deliver(std::move(*held.front()));
      held.pop_front();
      ++deliver_seq;
      moved = true;
    }
    if (moved) room.set();
  }

  void deliver_cancelled(queued& q, unsigned attempts, double elapsed_ms) {
    fetch_result r;
    r.index = q.input.index;
    r.url = std::move(q.input.url);
    r.attempts = attempts;
    r.elapsed_ms = elapsed_ms;
    r.error_kind = "cancelled";
    r.error_message = stop_reason;
    deliver(std::move(r), q.seq);
  }

  // One attempt: a non-2xx response is an http_status_error (with its
  // Retry-After), so the retry policy sees it. What the result needs is
  // kept in `is`, not returned.
  task<void> attempt(const fetch_input& in, const url& u, item_state& is) {
    ++is.attempts;
    std::optional<gate_pass> gate;
    std::optional<shared_pass> shared_gate;
    if (o.limits) {
      if (o.limits->per_host() != 0) {
        std::string origin = u.origin();
        auto waiting = o.limits->acquire_host(origin);
        co_await std::move(waiting);
        shared_gate.emplace(*o.limits, std::move(origin));
      }
      if (o.limits->rate() > 0) {
        auto token = o.limits->acquire_rate();
        co_await std::move(token);
      }
    } else if (o.per_host != 0) {
      gate.emplace(gates, u.origin(), o.per_host);
      co_await gate->permits().acquire();
      gate->held = true;
    }
    if (rate) co_await rate->acquire();
    if (o.body_store != nullptr) {
      co_await attempt_to_store(in, u, is);
      co_return;
    }
    // The response is made once, in place (no try here: a failure goes up
    // to the retry loop as it is).
    headers h = o.request_headers;
    url target = u;
    response r =
        co_await c->send(o.method, std::move(target), std::move(h), o.body.value_or(std::string()), ro);
    take(r, is);
  }

  // An attempt whose body goes to the body store: an ok one commits it,
  // any other ending discards it.
  task<void> attempt_to_store(const fetch_input& in, const url& u, item_state& is) {
    std::unique_ptr<fetch_body_target> target = o.body_store->open(in, is.attempts);
    request_options ro_now = ro;
    ro_now.sink = target.get();
    headers h = o.request_headers;
    url where = u;
    std::exception_ptr failure;
    std::optional<response> r;
    try {
      r.emplace(
          co_await c->send(o.method, std::move(where), std::move(h), o.body.value_or(std::string()), ro_now));
      if (r->ok()) {
        take_head(*r, is);
        is.path = co_await target->commit();
        target.reset();
      }
    } catch (...) {
      failure = std::current_exception();
    }
    if (target) {
      auto discarding = shielded(target->discard());
      co_await std::move(discarding);
    }
    if (failure) std::rethrow_exception(failure);
    take(*r, is);
  }

  // What the result needs from the response (not the body).
  void take_head(response& r, item_state& is) const {
    is.status = r.status;
    is.bytes = r.wire_body_bytes;
    is.final_url = std::move(r.url);
  }

  // The response into `is`; a non-2xx one is an http_status_error (with its
  // Retry-After), so the retry policy sees it.
  void take(response& r, item_state& is) const {
    take_head(r, is);
    if (o.keep_body) is.body = std::move(r.body);
    std::optional<duration> retry_after;
    if (!r.ok())
      if (auto v = r.headers.get("Retry-After")) retry_after = parse_retry_after(*v);
    if (o.keep_headers) is.response_headers = std::move(r.headers);  // (after the last look at them)
    if (!r.ok()) {
      std::string reason(reason_phrase(r.status));
      throw http_status_error(
          r.status, "HTTP " + std::to_string(r.status) + (reason.empty() ? "" : " " + reason), retry_after);
    }
  }

  // Not a coroutine: the attempt's (or the retry loop's) task is the input's.
  task<void> attempts(const fetch_input& in, const url& u, item_state& is) {
    if (policy->max_attempts <= 1) return attempt(in, u, is);
    return retry(policy, [this, &in, &u, &is] { return attempt(in, u, is); });
  }

  // One input, start to result. Never throws: every way out delivers a result.
  task<void> fetch_one(queued& q) {
    ++st.in_flight;
    std::string message;
    std::optional<url> parsed = url_of(q.input, message);
    bool cancelled = parsed && stopping;
    if (parsed && o.ordered && !cancelled) {
      std::exception_ptr waited;
      try {
        while (!stopping && q.seq - deliver_seq >= reorder_limit) {
          room.clear();
          co_await room.wait();
        }
      } catch (...) {
        waited = std::current_exception();
      }
      cancelled = stopping || waited != nullptr;
    }
    if (!parsed) {
      fetch_result r;
      r.index = q.input.index;
      r.url = std::move(q.input.url);
      r.error_kind = "invalid_url";
      r.error_message = std::move(message);
      deliver(std::move(r), q.seq);
    } else if (cancelled) {
      deliver_cancelled(q, 0, 0);
    } else {
      const time_point start = loop->now();
      item_state is;
      std::exception_ptr failure;
      try {
        co_await attempts(q.input, *parsed, is);
      } catch (...) {
        failure = std::current_exception();
      }
      finish(q, is, failure, ms_since(start));
    }
    if (--st.in_flight == 0) idle.set();
  }

  // The result of an input that made its attempts.
  void finish(queued& q, item_state& is, const std::exception_ptr& failure, double elapsed) {
    std::string message;
    std::string kind;
    if (failure) kind = fetch_error_kind(failure, message);
    if (kind == "cancelled") {
      deliver_cancelled(q, is.attempts, elapsed);
      return;
    }
    fetch_result r;
    r.index = q.input.index;
    r.url = std::move(q.input.url);
    r.ok = failure == nullptr;
    r.status = is.status;
    r.attempts = is.attempts;
    r.elapsed_ms = elapsed;
    r.bytes = is.bytes;
    r.final_url = std::move(is.final_url);
    r.error_kind = std::move(kind);
    r.error_message = std::move(message);
    r.body = std::move(is.body);
    r.response_headers = std::move(is.response_headers);
    r.path = std::move(is.path);
    deliver(std::move(r), q.seq);
  }

  // Hands one input to the window without waiting when there is room (or,
  // once stopping, gives it its cancelled result: it was read). False: the
  // channel is full; `q` is intact.
  bool offer_now(queued& q) {
    if (stopping) {  // (the deadline drain included)
      deliver_cancelled(q, 0, 0);
      return true;
    }
    return inputs.try_send(std::move(q));  // (moves only when it succeeds)
  }

  // Reads the source (or, in the deadline drain, what is left of it). A
  // stop ends it between batches; every input of a batch read gets its result.
  task<void> read_inputs() {
    std::vector<fetch_input> batch;
    for (;;) {
      if (stopping && !draining) co_return;
      if (draining && stopped_by_caller) co_return;
      batch.clear();
      bool more = false;
      if (source->finite()) {
        // A finite source's read is bounded: shielded from a stop, so the
        // inputs it takes are never lost (each gets its result).
        auto reading = shielded(source->next(batch, 1024));
        more = co_await std::move(reading);
      } else {
        read_pending = true;
        more = co_await source->next(batch, 1024);
        read_pending = false;
      }
      st.read += batch.size();
      for (fetch_input& in : batch) {
        queued q{std::move(in), next_seq++};
        if (offer_now(q)) continue;
        const std::uint64_t index = q.input.index, seq = q.seq;
        std::string url_text = q.input.url;
        std::exception_ptr failure;
        try {
          co_await inputs.send(std::move(q));
        } catch (...) {
          failure = std::current_exception();  // cancelled (stopping): not sent
        }
        if (failure) {
          queued lost{fetch_input{index, std::move(url_text), {}}, seq};
          deliver_cancelled(lost, 0, 0);
        }
      }
      if (!more) {
        st.input_done = true;
        co_return;
      }
    }
  }

  task<void> run_window() {
    fanout_options fo;
    fo.limit = std::max<std::size_t>(o.concurrency, 1);
    auto fn = [this](queued& q) { return fetch_one(q); };
    auto stream = as_completed(inputs, fn, fo);
    while (co_await stream.next()) {
    }
  }

  task<void> deadline_timer() {
    co_await sleep_for(*o.deadline);
    st.deadline_hit = true;
    request_stop(!o.deadline_message.empty() ? o.deadline_message
                                             : "the run's deadline of " + describe_duration(*o.deadline) +
                                                   " passed before this input finished");
  }

  static task<void> join_quietly(join_handle<void>& h) {
    std::exception_ptr e;
    try {
      co_await h;
    } catch (...) {
      e = std::current_exception();  // cancelled: what it did is accounted for by the inputs
    }
  }

  task<void> main() {
    std::optional<join_handle<void>> timer;
    if (o.deadline) timer.emplace(loop->spawn(deadline_timer(), "fetch-deadline"));
    reader = loop->spawn(read_and_close(), "fetch-reader");
    window = loop->spawn(run_window(), "fetch-window");
    co_await join_quietly(window);
    co_await join_quietly(reader);
    while (st.in_flight > 0) {
      idle.clear();
      co_await idle.wait();
    }
    // Read but never started: cancelled results.
    while (auto q = inputs.try_receive()) deliver_cancelled(*q, 0, 0);
    // After the deadline, the rest of a finite source is read too: every
    // input gets its result. Not after a stop() (a signal means "stop
    // now"; a failed output cannot take the results), and not from a
    // source whose read was cut off.
    if (st.deadline_hit && !stopped_by_caller && !st.input_done && source->finite() && !read_pending) {
      draining = true;
      co_await read_inputs();
    }
    if (timer) timer->cancel();
    // Ordered: anything still held (it cannot be, every earlier input has
    // its result now) goes out in order.
    for (auto& h : held)
      if (h) sink->deliver(std::move(*h));
    held.clear();
  }

  // The window closes its channel when the reader ends.
  task<void> read_and_close() {
    std::exception_ptr failure;
    try {
      co_await read_inputs();
    } catch (...) {
      failure = std::current_exception();
    }
    inputs.close();
    if (failure) std::rethrow_exception(failure);
  }
};

fetcher::fetcher(fetch_options opts) : impl_(std::make_unique<impl>(nullptr, std::move(opts))) {}
fetcher::fetcher(client& shared, fetch_options opts)
    : impl_(std::make_unique<impl>(&shared, std::move(opts))) {}
fetcher::~fetcher() = default;

task<fetch_statistics> fetcher::run(fetch_source& source, fetch_sink& sink) {
  impl& m = *impl_;
  if (m.ran) throw usage_error("fetcher::run: a fetcher runs once");
  m.ran = true;
  m.source = &source;
  m.sink = &sink;
  m.loop = &detail::current_task("fetcher::run").loop();
  // The run is a task of its own: cancelling this caller is a stop, and
  // the caller still waits (shielded) until every input has its result.
  join_handle<void> running = m.loop->spawn(m.main(), "fetch-run");
  std::exception_ptr cancelled;
  try {
    co_await running;
  } catch (...) {
    cancelled = std::current_exception();
  }
  if (cancelled && !running.done()) {
    m.stopped_by_caller = true;
    m.request_stop("cancelled");
    auto rest = shielded(running);
    co_await std::move(rest);
  }
  if (cancelled) std::rethrow_exception(cancelled);
  co_return m.st;
}

void fetcher::stop(std::string reason) {
  impl_->stopped_by_caller = true;
  impl_->request_stop(std::move(reason));
}

bool fetcher::stopping() const noexcept { return impl_->stopping; }
const fetch_statistics& fetcher::statistics() const noexcept { return impl_->st; }
client& fetcher::http_client() noexcept { return *impl_->c; }

task<bool> vector_source::next(std::vector<fetch_input>& out, std::size_t max) {
  while (next_ < inputs_.size() && max-- > 0) out.push_back(std::move(inputs_[next_++]));
  co_return next_ < inputs_.size();
}

task<fetch_statistics> fetch_many(fetch_source& source, fetch_sink& sink, fetch_options opts) {
  fetcher f(std::move(opts));
  co_return co_await f.run(source, sink);
}

namespace {

struct vector_sink final : fetch_sink {
  std::vector<fetch_result>* out;
  explicit vector_sink(std::vector<fetch_result>& v) : out(&v) {}
  void deliver(fetch_result&& r) override { (*out)[r.index] = std::move(r); }
};

std::vector<fetch_input> inputs_of(std::vector<std::string>& urls) {
  std::vector<fetch_input> in;
  in.reserve(urls.size());
  for (std::size_t i = 0; i < urls.size(); ++i) {
    fetch_input x;
    x.index = i;
    x.url = std::move(urls[i]);
    in.push_back(std::move(x));
  }
  return in;
}

task<std::vector<fetch_result>> fetch_all_with(client* shared, std::vector<std::string> urls,
                                               fetch_options opts) {
  std::vector<fetch_result> results(urls.size());
  vector_source source(inputs_of(urls));
  vector_sink sink(results);
  std::unique_ptr<fetcher> f = shared != nullptr ? std::make_unique<fetcher>(*shared, std::move(opts))
                                                 : std::make_unique<fetcher>(std::move(opts));
  (void)co_await f->run(source, sink);
  co_return results;
}

}  // namespace

task<std::vector<fetch_result>> fetch_all(std::vector<std::string> urls, fetch_options opts) {
  return fetch_all_with(nullptr, std::move(urls), std::move(opts));
}

task<std::vector<fetch_result>> fetch_all(client& shared, std::vector<std::string> urls, fetch_options opts) {
  return fetch_all_with(&shared, std::move(urls), std::move(opts));
}

}  // namespace spindle::http
