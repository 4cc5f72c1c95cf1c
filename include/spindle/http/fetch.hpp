#pragma once
/// \file
/// The fetch engine: many URLs, each to exactly one result. `spindle fetch`
/// is option parsing, input reading and output writing over it; the
/// aggregator's HTTP backend and the Python package use it directly.
///
///     std::vector<http::fetch_result> rs = co_await http::fetch_all(urls, {.concurrency = 32});
///
/// What it does for each input (docs/net.md, "The fetch engine"): attempts
/// with the HTTP retry policy (backoff with full jitter, Retry-After up to a
/// limit, idempotent methods only unless asked), each attempt bounded by
/// `timeout` and started within the window (`concurrency`), the per-origin
/// limit (`per_host`) and the rate limit (`rate`); an overall `deadline`.
/// The contract: every input the source gave ends in exactly one result
/// delivered to the sink, success or a typed error (`cancelled` for the
/// inputs a stop or the deadline cut short) — nothing read is lost, nothing
/// is invented.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spindle/clock.hpp"
#include "spindle/http/client.hpp"
#include "spindle/http/message.hpp"
#include "spindle/task.hpp"

namespace spindle::http {

/// One input of a fetch.
struct fetch_input {
  /// The caller's number for it (for example its line): results carry it
  /// back. The engine does not require them to be unique or increasing.
  std::uint64_t index = 0;
  /// As given; reported as is. Without a scheme ("host[:port]/path") it is
  /// fetched as http:// + url, as curl does.
  std::string url;
  /// Not empty: this input is no URL (for example a line over the reader's
  /// limit); it is never requested and its result is `invalid_url` with
  /// this message.
  std::string invalid;
};

/// One input's result.
struct fetch_result {
  std::uint64_t index = 0;
  std::string url;  ///< as given
  bool ok = false;  ///< a 2xx final response
  int status = 0;   ///< the last response's status; 0: none
  unsigned attempts = 0;
  double elapsed_ms = 0;    ///< first attempt's start to the result
  std::uint64_t bytes = 0;  ///< the last response's body bytes on the wire
  std::string final_url;    ///< the last response's URL (after redirects); empty: none
  std::string error_kind;   ///< empty when ok; else one of fetch_error_kinds
  std::string error_message;
  std::string body;          ///< with fetch_options::keep_body
  headers response_headers;  ///< with fetch_options::keep_headers: the last response's fields
  std::string path;          ///< with a body_store: where the ok body was saved
};

/// The error kinds a result can have: invalid_url, dns, connect, tls,
/// timeout, protocol, redirect, http_status (a non-2xx final response),
/// cancelled (a stop or the deadline), and rejected (anything else: the
/// message names it).
[[nodiscard]] const std::vector<std::string_view>& fetch_error_kinds();

/// A failure's kind, one of fetch_error_kinds(), and its message in `message`.
[[nodiscard]] std::string fetch_error_kind(const std::exception_ptr& e, std::string& message);

/// Where the inputs come from, as a stream: nothing needs to be in memory
/// at once, and a source that waits (a pipe) never blocks the loop.
class fetch_source {
 public:
  virtual ~fetch_source() = default;
  /// Appends up to `max` inputs to `out`; false once there are no more
  /// (after the ones appended). Runs on the engine's loop. When the source
  /// is not finite(), a stop cancels a pending call (its inputs are lost:
  /// the caller's documented rule for such sources); a finite() source's
  /// call is awaited to its end, and every input it gives gets a result.
  virtual task<bool> next(std::vector<fetch_input>& out, std::size_t max) = 0;
  /// True when reading to the end is bounded (a regular file, a vector):
  /// after the deadline, the rest is read and every input gets a
  /// `cancelled` result. False (a pipe, a socket): the rest is left unread.
  [[nodiscard]] virtual bool finite() const noexcept { return false; }
};

/// Where the results go: exactly one per input the source gave.
class fetch_sink {
 public:
  virtual ~fetch_sink() = default;
  /// On the engine's loop; must not block (buffer, and write from a task
  /// of your own). To stop the run after a failed write, call
  /// fetcher::stop().
  virtual void deliver(fetch_result&& r) = 0;
};

/// One attempt's body, saved somewhere instead of kept in memory
/// (fetch_options::body_store). The client waits for each write: a slow
/// target slows the download down, memory stays bounded.
class fetch_body_target : public body_sink {
 public:
  /// The attempt succeeded (a 2xx final response): make the body permanent;
  /// returns where it is (fetch_result::path). Throwing fails the input
  /// with that error.
  virtual task<std::string> commit() = 0;
  /// The attempt failed or was cancelled: remove what was written. Must not
  /// throw. Also called when the target is dropped without either call.
  virtual task<void> discard() = 0;
};

/// Makes a fetch_body_target per attempt.
class fetch_body_store {
 public:
  virtual ~fetch_body_store() = default;
  /// For attempt `attempt` (1, 2, ...) of `input`.
  virtual std::unique_ptr<fetch_body_target> open(const fetch_input& input, unsigned attempt) = 0;
};

/// The per-origin limit and the rate limit shared by fetchers on several
/// loops (threads): `spindle fetch --loops N` runs a fetcher per loop, and
/// its --per-host and --rate count every loop's attempts together, not each
/// loop's alone. Waiting for a slot or a token suspends the waiting task on
/// its own loop (a slot's waiter is woken through its loop's
/// call_soon_threadsafe); no loop thread waits but for a short mutex.
///
/// **Thread safety:** every member, from tasks on any loops at once.
/// **Cancellation:** acquire_host() and acquire_rate() are cancellation
/// points; cancelled, they keep nothing (a slot granted meanwhile is passed on).
class fetch_limits {
 public:
  /// `per_host`: attempts in flight per origin, all fetchers together (0:
  /// no limit); `rate`: attempts started per second, all together (0:
  /// unlimited; burst rate/10, at least 1, as fetch_options::rate).
  fetch_limits(std::size_t per_host, double rate);
  ~fetch_limits();
  fetch_limits(const fetch_limits&) = delete;
  fetch_limits& operator=(const fetch_limits&) = delete;

  [[nodiscard]] std::size_t per_host() const noexcept;
  [[nodiscard]] double rate() const noexcept;
  /// Waits (first come, first served per origin) for a slot of `origin`;
  /// give it back with release_host(). No-op without a per-host limit.
  task<void> acquire_host(std::string origin);
  void release_host(const std::string& origin) noexcept;
  /// Waits for a token (a reservation: the n-th waiter sleeps n/rate).
  task<void> acquire_rate();
  /// Slots of `origin` in use now (for tests and diagnostics).
  [[nodiscard]] std::size_t in_use(const std::string& origin) const;

  struct state;

 private:
  std::shared_ptr<state> s_;
};

struct fetch_options {
  /// Inputs in flight at most (each an attempt, a backoff wait or a wait
  /// for a per-host slot). Window slots are made as inputs arrive: memory
  /// follows the work, not this number.
  std::size_t concurrency = 64;
  /// Attempts in flight per origin (scheme, host, port) at most; 0: no
  /// limit but `concurrency`. Counted by the input's own origin (not a
  /// redirect's). With an engine-made client, also its connections per origin.
  std::size_t per_host = 0;
  duration timeout = std::chrono::seconds(10);  ///< each attempt: connect, send, the whole response
  /// The whole run; nullopt: none (zero or negative: already passed). When
  /// it passes, in-flight inputs end as `cancelled`, no attempt starts, and
  /// a finite() source is read to its end, each input a `cancelled` result.
  std::optional<duration> deadline{};
  /// The message of the results the deadline cancels; empty: "the run's
  /// deadline of D passed before this input finished".
  std::string deadline_message{};
  unsigned retries = 2;                               ///< attempts after the first, for retryable failures
  duration backoff = std::chrono::milliseconds(100);  ///< base delay (exponential, full jitter)
  /// A Retry-After longer than this ends the input with its status instead of waiting.
  duration max_retry_after = std::chrono::seconds(60);
  /// Retry POST, PATCH and other non-idempotent methods too.
  bool retry_unsafe = false;
  double rate = 0;  ///< attempts started per second at most; 0: unlimited (burst: rate/10, at least 1)
  std::string method = "GET";
  headers request_headers{};
  std::optional<std::string> body{};             ///< the request body, the same for every input
  bool keep_body = false;                        ///< fetch_result::body (also of failed responses)
  bool keep_headers = false;                     ///< fetch_result::response_headers
  std::uint64_t max_body = 64ull * 1024 * 1024;  ///< per response, wire and decoded
  /// Deliver results in the source's order. At most `reorder_limit`
  /// inputs may run ahead of the oldest unfinished one (0: 4 × concurrency),
  /// so the held results stay bounded; a slow input then holds the window.
  bool ordered = false;
  std::size_t reorder_limit = 0;
  /// Ok bodies go here (streamed, never whole in memory) instead of
  /// fetch_result::body. Owned by the caller; it must outlive the run.
  fetch_body_store* body_store = nullptr;
  /// Limits shared with fetchers on other loops: when set, the per-origin
  /// gate and the rate limit are its (per_host and rate above only size an
  /// engine-made client's connections; 0 there: the limits' per_host).
  std::shared_ptr<fetch_limits> limits{};
  /// Inputs read ahead of the window at most (at least 1). A fetcher that
  /// shares its source with others takes a small one, so inputs are not
  /// hoarded by one loop while another is idle.
  std::size_t input_buffer = 1024;
  /// For an engine-made client: redirects, TLS and the rest. Its
  /// connection limits and timeouts are set from the fields above.
  client_options client{};
};

/// Log-bucketed latencies (about 1.6% resolution), bounded memory.
class latency_histogram {
 public:
  void add(double ms);
  [[nodiscard]] double quantile(double q) const;  ///< 0 when empty
  [[nodiscard]] double max() const noexcept { return max_; }
  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  /// Adds `other`'s latencies (the fetchers of several loops into one).
  void merge(const latency_histogram& other);

 private:
  std::vector<std::uint64_t> buckets_;
  std::uint64_t count_ = 0;
  double max_ = 0;
};

struct fetch_statistics {
  std::uint64_t read = 0;  ///< inputs the source gave (each has, or will have, a result)
  std::uint64_t ok = 0, failed = 0;
  std::uint64_t retries = 0;  ///< attempts after the first, all inputs together
  std::size_t in_flight = 0;  ///< inputs started and not finished
  bool input_done = false;    ///< the source said there are no more
  bool deadline_hit = false;
  std::map<std::string, std::uint64_t> errors;  ///< failed results by kind
  latency_histogram latency;                    ///< of the inputs that made an attempt
  /// Adds `other`'s counts (in_flight too; input_done and deadline_hit: either).
  void merge(const fetch_statistics& other);
};

/// One run of the engine, on the calling task's loop.
///
/// **Thread safety:** the loop's thread only.
/// **Cancellation:** cancelling run() is a stop() ("cancelled" as the
/// reason): every input read still gets its result before run() ends.
class fetcher {
 public:
  /// With a client of its own, made from `opts.client` (on the loop's thread).
  explicit fetcher(fetch_options opts);
  /// With the caller's client (shared with other work; it must outlive
  /// the fetcher). per_host is enforced by the engine alone then.
  fetcher(client& shared, fetch_options opts);
  ~fetcher();
  fetcher(const fetcher&) = delete;
  fetcher& operator=(const fetcher&) = delete;

  /// Runs until every input the source gives has its result in the sink
  /// (once per fetcher). Never throws for an input's failure.
  task<fetch_statistics> run(fetch_source& source, fetch_sink& sink);
  /// Stops the run: no attempt starts, in-flight inputs end as `cancelled`
  /// (with `reason` as their message), inputs read and not started too, and
  /// the source is not read further. A later stop() keeps the first reason.
  void stop(std::string reason);
  [[nodiscard]] bool stopping() const noexcept;
  /// Counts so far (for a progress line).
  [[nodiscard]] const fetch_statistics& statistics() const noexcept;
  [[nodiscard]] client& http_client() noexcept;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

/// A fetcher's run with its own client.
task<fetch_statistics> fetch_many(fetch_source& source, fetch_sink& sink, fetch_options opts = {});

/// The results of `urls` in their order (index i for urls[i]).
task<std::vector<fetch_result>> fetch_all(std::vector<std::string> urls, fetch_options opts = {});
/// As fetch_all(), over the caller's client.
task<std::vector<fetch_result>> fetch_all(client& shared, std::vector<std::string> urls,
                                          fetch_options opts = {});

/// A source over a vector of inputs (finite).
class vector_source final : public fetch_source {
 public:
  explicit vector_source(std::vector<fetch_input> inputs) : inputs_(std::move(inputs)) {}
  task<bool> next(std::vector<fetch_input>& out, std::size_t max) override;
  [[nodiscard]] bool finite() const noexcept override { return true; }

 private:
  std::vector<fetch_input> inputs_;
  std::size_t next_ = 0;
};

}  // namespace spindle::http
