// `spindle fetch`: the run. One event loop; the inputs stream in from a
// reader task (file reads on a one-thread pool, so a slow pipe never
// blocks the loop) through a bounded channel into as_completed, whose
// window of --concurrency workers runs one item each: the attempts (the
// library's HTTP retry policy: backoff with full jitter, Retry-After), each
// bounded by --timeout. Every item writes its own result line; a flusher
// task writes the batch once the loop's ready tasks have run. SIGINT or
// SIGTERM (signalfd), --deadline, or a failed write of the results stops
// the run: the reader and the window are cancelled, cancelled items write
// `cancelled` results, and inputs read but not started are drained from the
// channel as `cancelled` too. Nothing read is ever without a result (after a
// failed write, the results not written are counted as lost).

#include "fetch.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

#include "line_reader.hpp"
#include "output.hpp"
#include "parse.hpp"
#include "spindle/as_completed.hpp"
#include "spindle/async_fd.hpp"
#include "spindle/cancel_scope.hpp"
#include "spindle/channel.hpp"
#include "spindle/diagnostics.hpp"
#include "spindle/event.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/http/client.hpp"
#include "spindle/http/url.hpp"
#include "spindle/net/tls.hpp"
#include "spindle/rate_limiter.hpp"
#include "spindle/sleep.hpp"
#include "spindle/thread_pool.hpp"
#include "spindle/watchdog.hpp"

namespace spindle::cli {

namespace {

struct input_item {
  std::uint64_t index = 0;
  std::string url;
  std::string invalid;  // not empty: why this input is no URL (never requested)
};

// An input line as an item: a line over the limit is one invalid input.
input_item item_of(input_line&& line) {
  input_item it;
  it.url = std::move(line.text);
  if (line.too_long != 0) it.invalid = "line too long: " + std::to_string(line.too_long) + " bytes";
  return it;
}

// Where an input has a scheme: a letter, then letters, digits, '+', '-' or
// '.', then ":/" (curl's rule). "127.0.0.1:8080/f", "localhost:8080" and
// "example.com/x" have none.
bool has_scheme(std::string_view text) {
  if (text.empty() || !((text[0] >= 'a' && text[0] <= 'z') || (text[0] >= 'A' && text[0] <= 'Z')))
    return false;
  std::size_t i = 1;
  while (i < text.size() &&
         ((text[i] >= 'a' && text[i] <= 'z') || (text[i] >= 'A' && text[i] <= 'Z') ||
          (text[i] >= '0' && text[i] <= '9') || text[i] == '+' || text[i] == '-' || text[i] == '.'))
    ++i;
  return text.substr(i).starts_with(":/");
}

// The URL an input names: as given, or, without a scheme (host[:port]/path),
// http:// + input, as curl does. nullopt and `message` when it is none.
std::optional<http::url> url_of(const input_item& it, std::string& message) {
  if (!it.invalid.empty()) {
    message = it.invalid;
    return std::nullopt;
  }
  const bool guessed = !has_scheme(it.url);
  try {
    return http::url::parse(guessed ? "http://" + it.url : it.url);
  } catch (const std::exception& e) {
    message = e.what();
    if (guessed) message += " (no scheme given, so http:// was assumed)";
  }
  return std::nullopt;
}

// Per item, across its attempts.
struct item_state {
  unsigned attempts = 0;
  int status = 0;
  std::uint64_t bytes = 0;
  std::string body;
  std::string final_url;  // where the last response came from (after redirects)
  http::headers headers;  // the last response's (--include-headers)
};

struct run_state {
  const fetch_options& o;
  event_loop& loop;
  http::client client;
  std::optional<rate_limiter> rate;
  thread_pool input_pool;
  std::shared_ptr<line_reader> file;
  channel<input_item> inputs{1024, "fetch inputs"};
  resume_scan resume;
  result_writer out;
  http::headers base_headers;
  http::request_options ro;
  std::shared_ptr<const retry_policy> policy;  // one for every item: not copied per item
  time_point started;

  // Progress of the input.
  std::uint64_t next_index = 0;
  std::size_t next_arg = 0;
  bool input_done = false;
  bool pool_read_pending = false;  // a read job from a pipe was cut off by a stop (it may still run)
  bool input_is_file = false;      // a regular file: it ends, so a deadline drain can read it all
  bool draining = false;           // the deadline drain: read on after the stop
  std::uint64_t total_inputs = 0;  // counted ahead for the progress bar (a regular file); 0: unknown
  std::string input_error;
  std::uint64_t read = 0, skipped = 0, other_shards = 0;

  // Results.
  std::uint64_t ok = 0, failed = 0, retries = 0;
  std::map<std::string, std::uint64_t> errors;
  latency_histogram latency;
  std::size_t in_flight = 0;
  event idle{"fetch idle"};

  // Stopping.
  bool stopping = false;
  bool deadline_hit = false;
  bool output_failed = false;  // the results could not be written: the run was stopped
  int signal = 0;
  std::string stop_reason;
  join_handle<void> reader, window;

  run_state(const fetch_options& opts, event_loop& l, http::client_options co, int out_fd)
      : o(opts), loop(l), client(std::move(co)), input_pool(pool_options(l)), out(out_fd), started(l.now()) {}

  static thread_pool_options pool_options(event_loop& l) {
    thread_pool_options p;
    p.name = "fetch-input";
    p.threads = 1;
    p.queue_capacity = 2;
    p.abandon_grace =
        std::chrono::milliseconds(100);  // a read blocked on a silent pipe is left behind at exit
    p.attach_to = &l;
    return p;
  }

  void request_stop(std::string reason) {
    if (stopping) return;
    stopping = true;
    stop_reason = std::move(reason);
    if (reader.valid() && !reader.done()) reader.cancel();
    if (window.valid() && !window.done()) window.cancel();
  }

  void emit(const fetch_result& r) {
    out.add(r);
    if (r.ok) {
      ++ok;
    } else {
      ++failed;
      ++errors[std::string(r.error_kind)];
    }
    if (r.attempts > 1) retries += r.attempts - 1;
    if (r.attempts > 0) latency.add(r.elapsed_ms);
  }

  void emit_cancelled(std::uint64_t index, std::string_view url, unsigned attempts, double elapsed_ms) {
    fetch_result r;
    r.index = index;
    r.url = url;
    r.attempts = attempts;
    r.elapsed_ms = elapsed_ms;
    r.error_kind = "cancelled";
    r.error_message = stop_reason;
    out.add(r);
    ++failed;
    ++errors["cancelled"];
  }

  [[nodiscard]] double ms_since(time_point t) const {
    return std::chrono::duration<double, std::milli>(loop.now() - t).count();
  }

  // One attempt: a non-2xx response is an http_status_error (with its
  // Retry-After), so the retry policy sees it. What the result needs is
  // kept in `is`, not returned: the response is not moved up the chain.
  task<void> attempt(const http::url& u, item_state& is) {
    ++is.attempts;
    if (rate) co_await rate->acquire();
    http::headers h = base_headers;
    http::url target = u;
    http::response r =
        co_await client.send(o.method, std::move(target), std::move(h), o.data.value_or(std::string()), ro);
    is.status = r.status;
    is.bytes = r.wire_body_bytes;
    is.final_url = std::move(r.url);
    if (o.body) is.body = std::move(r.body);
    std::optional<duration> retry_after;
    if (!r.ok())
      if (auto v = r.headers.get("Retry-After")) retry_after = http::parse_retry_after(*v);
    if (o.include_headers) is.headers = std::move(r.headers);  // (after the last look at them)
    if (!r.ok()) {
      std::string reason(http::reason_phrase(r.status));
      throw http::http_status_error(
          r.status, "HTTP " + std::to_string(r.status) + (reason.empty() ? "" : " " + reason), retry_after);
    }
  }

  // Not a coroutine: the attempt's (or the retry loop's) task is the item's.
  task<void> attempts(const http::url& u, item_state& is) {
    if (policy->max_attempts <= 1) return attempt(u, is);
    return retry(policy, [this, &u, &is] { return attempt(u, is); });
  }

  // One input, start to result. Never throws: every way out writes a result.
  task<void> fetch_one(input_item& it) {
    ++in_flight;
    const time_point start = loop.now();
    fetch_result r;
    r.index = it.index;
    r.url = it.url;
    item_state is;
    std::exception_ptr failure;
    std::string message;
    std::optional<http::url> parsed = url_of(it, message);
    if (!parsed) {
      r.error_kind = "invalid_url";
      r.error_message = message;
      emit(r);
    } else if (stopping) {
      emit_cancelled(it.index, it.url, 0, 0);
    } else {
      try {
        co_await attempts(*parsed, is);
      } catch (...) {
        failure = std::current_exception();
      }
      r.attempts = is.attempts;
      r.elapsed_ms = ms_since(start);
      r.status = is.status;
      r.bytes = is.bytes;
      r.final_url = is.final_url;
      if (o.body) r.body = &is.body;
      if (o.include_headers && is.status != 0) r.headers = &is.headers;
      if (!failure) {
        r.ok = true;
        emit(r);
      } else {
        std::string kind = error_kind_of(failure, message);
        if (kind == "cancelled") {
          emit_cancelled(it.index, it.url, is.attempts, r.elapsed_ms);
        } else {
          r.error_kind = kind;
          r.error_message = message;
          if (is.body.empty()) r.body = nullptr;
          emit(r);
        }
      }
    }
    if (--in_flight == 0) idle.set();
  }

  std::function<bool(const std::exception_ptr&)> base_retryable;
  bool retryable(const std::exception_ptr& e) const {
    try {
      std::rethrow_exception(e);
    } catch (const http::http_status_error& s) {
      if (s.retry_after() && *s.retry_after() > o.max_retry_after) return false;
    } catch (...) {
    }
    return base_retryable ? base_retryable(e) : false;
  }

  // Hands one input to the window without waiting when there is room (or
  // skips it, or, once stopping, gives it its cancelled result: it was
  // read). False: the window is full, offer() must wait; `item` is intact.
  bool offer_now(input_item& item) {
    const std::uint64_t index = item.index;
    if (o.shard_n > 1 && index % o.shard_n != o.shard_k) {
      ++other_shards;
      return true;
    }
    if (resume.has(index)) {
      ++skipped;
      return true;
    }
    if (stopping) {
      ++read;
      emit_cancelled(index, item.url, 0, 0);
      return true;
    }
    if (inputs.try_send(std::move(item))) {  // (moves only when it succeeds)
      ++read;
      return true;
    }
    return false;
  }

  // offer_now(), waiting for room.
  task<void> offer(input_item item) {
    if (offer_now(item)) co_return;
    ++read;
    const std::uint64_t index = item.index;
    std::string url = item.url;
    std::exception_ptr failure;
    try {
      co_await inputs.send(std::move(item));
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) emit_cancelled(index, url, 0, 0);  // cancelled (stopping): not sent
  }

  // Reads every input (or, after a stop, what is left: the deadline drain).
  // A stop ends it between batches (a batch read is always offered: its
  // lines get their results); the drain reads on.
  task<void> read_inputs() {
    while (next_arg < o.urls.size()) {
      input_item item;
      item.url = o.urls[next_arg++];
      item.index = next_index++;
      co_await offer(std::move(item));
    }
    bool cut = false;
    while (file && !input_done) {
      if (stopping && !draining) {
        cut = true;  // the rest: the deadline drain (a regular file), or nothing
        break;
      }
      // Named, not a temporary inside the co_await: g++ 12 destroys such
      // temporaries' captures twice (DEVELOPERS.md). The job owns the reader
      // (shared), so an abandoned read outlives this frame safely.
      auto read_batch = [f = file] {
        std::vector<input_line> lines;
        const bool more = f->read_batch(lines, 1024);
        return std::make_pair(more, std::move(lines));
      };
      auto reading = run_blocking(input_pool, job_name{"read urls"}, std::move(read_batch));
      std::pair<bool, std::vector<input_line>> batch;
      if (input_is_file) {
        // A regular file's read is bounded: shielded from a stop, so the
        // lines it took from the file are never lost (each gets its result).
        auto guarded = shielded(std::move(reading));
        batch = co_await std::move(guarded);
      } else {
        // A pipe's read may wait forever: a stop cuts it off, and what it
        // reads then is lost (the documented rule for pipes).
        pool_read_pending = true;
        batch = co_await std::move(reading);
        pool_read_pending = false;
      }
      for (input_line& line : batch.second) {
        input_item item = item_of(std::move(line));
        item.index = next_index++;
        if (!offer_now(item)) co_await offer(std::move(item));
      }
      if (!batch.first) {
        input_done = true;
        if (file->error() != 0)
          input_error = file->name() + ": line " + std::to_string(file->line() + 1) + ": " +
                        std::strerror(file->error());
      }
    }
    if (!cut) input_done = true;
    inputs.close();
  }

  task<void> run_window() {
    fanout_options fo;
    fo.limit = o.concurrency;
    auto fn = [this](input_item& it) { return fetch_one(it); };
    auto stream = as_completed(inputs, fn, fo);
    while (co_await stream.next()) {
    }
  }

  task<void> flusher() {
    for (;;) {
      co_await out.pending.wait();
      co_await yield();  // the other completions of this turn join the batch
      out.flush();
      if (out.error() != 0 && !output_failed) {
        // A dead output (closed pipe, full disk): no new request starts and
        // the in-flight ones are cancelled; their results are lost.
        output_failed = true;
        request_stop(std::string("the output failed (") + std::strerror(out.error()) +
                     ") before this input finished");
      }
    }
  }

  void draw_progress(bool final) {
    progress_counts c;
    c.ok = ok;
    c.failed = failed;
    c.read = read;
    c.in_flight = in_flight;
    c.input_done = input_done;
    c.total = total_inputs;
    c.secs = std::chrono::duration<double>(loop.now() - started).count();
    std::fputs(final ? "\r\x1b[K" : progress_line(c).c_str(), stderr);
    std::fflush(stderr);
  }

  // For the progress bar: the inputs of a regular file that this run will
  // give results for (this shard's, not already done by --resume), counted
  // on a thread of their own with the reader's rules, ahead of the reading.
  task<void> count_inputs() {
    thread_pool_options po;
    po.name = "fetch-count";
    po.threads = 1;
    po.queue_capacity = 1;
    po.abandon_grace = std::chrono::milliseconds(100);  // a huge file is left to count alone at exit
    po.attach_to = &loop;
    thread_pool counter(po);
    const int fd = ::open(o.urls_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) co_return;
    auto file_lines = std::make_shared<line_reader>(fd, o.urls_file);
    const std::uint64_t first = o.urls.size();
    const std::uint64_t shard_n = o.shard_n, shard_k = o.shard_k;
    // (Copies: an abandoned job may outlive this run's state.)
    auto done = std::make_shared<const resume_scan>(resume);
    auto count = [file_lines, first, shard_n, shard_k, done] {
      std::uint64_t here = 0;
      std::uint64_t index = first;
      std::vector<input_line> lines;
      for (bool more = true; more;) {
        lines.clear();
        more = file_lines->read_batch(lines, 4096);
        for (std::size_t i = 0; i < lines.size(); ++i, ++index)
          if ((shard_n <= 1 || index % shard_n == shard_k) && !done->has(index)) ++here;
      }
      return here;
    };
    std::uint64_t args_here = 0;
    for (std::uint64_t i = 0; i < first; ++i)
      if ((shard_n <= 1 || i % shard_n == shard_k) && !resume.has(i)) ++args_here;
    const std::uint64_t in_file = co_await run_blocking(counter, job_name{"count urls"}, std::move(count));
    total_inputs = args_here + in_file;
  }

  task<void> progress() {
    for (;;) {
      co_await sleep_for(std::chrono::milliseconds(200));
      draw_progress(false);
    }
  }

  task<void> watch_signals(int sfd) {
    async_fd io(loop, sfd);
    for (;;) {
      signalfd_siginfo si{};
      const ssize_t n = ::read(sfd, &si, sizeof si);
      if (n != static_cast<ssize_t>(sizeof si)) {
        co_await io.wait_readable();
        continue;
      }
      if (signal != 0) {
        // A second signal: write what is done, and go.
        out.flush();
        std::fputs("\nspindle fetch: second signal, exiting at once\n", stderr);
        ::_exit(128 + static_cast<int>(si.ssi_signo));
      }
      signal = static_cast<int>(si.ssi_signo);
      const char* name = signal == SIGINT ? "SIGINT" : "SIGTERM";
      if (!o.quiet)
        std::fprintf(
            stderr,
            "\nspindle fetch: %s: stopping (in-flight requests are cancelled; again to exit at once)\n",
            name);
      if (stopping) {
        stop_reason += std::string("; then interrupted by ") + name;
      } else {
        request_stop(std::string("interrupted by ") + name + " before this input finished");
      }
    }
  }

  task<void> deadline_timer() {
    co_await sleep_for(o.deadline);
    deadline_hit = true;
    request_stop("the run's --deadline of " + format_duration(o.deadline) +
                 " passed before this input finished");
  }

  static task<void> join_quietly(join_handle<void>& h) {
    std::exception_ptr e;
    try {
      co_await h;
    } catch (...) {
      e = std::current_exception();  // cancelled: what it did is accounted for by the items
    }
  }

  task<int> main(int sfd) {
    auto flushing = loop.spawn(flusher(), "fetch-flusher");
    auto signals = loop.spawn(watch_signals(sfd), "fetch-signals");
    std::optional<join_handle<void>> progressing, timer;
    const bool show_progress = o.progress == 1 || (o.progress == -1 && !o.quiet && ::isatty(2) != 0);
    std::optional<join_handle<void>> counting;
    if (show_progress) {
      progressing.emplace(loop.spawn(progress(), "fetch-progress"));
      if (input_is_file) counting.emplace(loop.spawn(count_inputs(), "fetch-count"));
    }
    if (o.deadline > duration::zero()) timer.emplace(loop.spawn(deadline_timer(), "fetch-deadline"));
    reader = loop.spawn(read_inputs(), "fetch-reader");
    window = loop.spawn(run_window(), "fetch-window");
    co_await join_quietly(window);
    co_await join_quietly(reader);
    while (in_flight > 0) {
      idle.clear();
      co_await idle.wait();
    }
    // Read but never started: cancelled results.
    while (auto it = inputs.try_receive()) emit_cancelled(it->index, it->url, 0, 0);
    // After the deadline, the rest of the input is read too: every input
    // gets its result (a signal means "stop now": no drain).
    // Only from a regular file (a pipe may never end; its reads are not
    // shielded, so a cut-off one may still be using the reader), and not
    // after the output failed (those results could not be written).
    if (deadline_hit && signal == 0 && !input_done && input_is_file && !pool_read_pending &&
        out.error() == 0) {
      draining = true;
      co_await read_inputs();
    }
    if (timer) timer->cancel();
    if (counting && !counting->done()) counting->cancel();
    if (progressing) {
      progressing->cancel();
      draw_progress(true);
    }
    signals.cancel();
    flushing.cancel();
    out.flush();
    if (signal != 0) co_return 128 + signal;
    if (out.error() != 0) co_return exit_io;
    if (!input_error.empty()) co_return exit_usage;
    co_return failed > 0 ? exit_failed : exit_ok;
  }

  void print_summary(int code, const std::string& out_name) const {
    const double secs = std::chrono::duration<double>(loop.now() - started).count();
    const std::uint64_t done = ok + failed;
    // After a write error, the first line also says how many of the
    // results were written and how many were lost (ok + failed = both).
    std::string counts;
    if (out.error() != 0)
      counts = " written=" + std::to_string(out.written()) + " lost=" + std::to_string(out.lost());
    std::fprintf(stderr, "ok=%llu failed=%llu elapsed_s=%.3f rps=%.1f%s\n",
                 static_cast<unsigned long long>(ok), static_cast<unsigned long long>(failed), secs,
                 secs > 0 ? static_cast<double>(done) / secs : 0.0, counts.c_str());
    // Errors of the run itself: also with --quiet.
    if (!input_error.empty()) std::fprintf(stderr, "spindle fetch: reading %s\n", input_error.c_str());
    if (out.error() != 0)
      std::fprintf(
          stderr, "spindle fetch: writing %s: %s: the run was stopped; %llu results written, %llu lost\n",
          out_name.c_str(), std::strerror(out.error()), static_cast<unsigned long long>(out.written()),
          static_cast<unsigned long long>(out.lost()));
    if (o.quiet) return;
    std::fprintf(stderr, "latency_ms p50=%.1f p90=%.1f p99=%.1f max=%.1f\n", latency.quantile(0.5),
                 latency.quantile(0.9), latency.quantile(0.99), latency.max());
    std::string errs;
    for (const auto& [kind, n] : errors) errs += " " + kind + "=" + std::to_string(n);
    std::fprintf(stderr, "errors%s\n", errs.empty() ? " none" : errs.c_str());
    const http::client_statistics cs = client.statistics();
    std::fprintf(stderr, "retries=%llu connections opened=%llu reused=%llu\n",
                 static_cast<unsigned long long>(retries), static_cast<unsigned long long>(cs.created),
                 static_cast<unsigned long long>(cs.reused));
    const loop_statistics ls = loop.statistics();
    if (ls.stalls > 0)
      std::fprintf(stderr, "stalls=%llu longest_ms=%lld (the event loop was held past 100 ms)\n",
                   static_cast<unsigned long long>(ls.stalls),
                   static_cast<long long>(
                       std::chrono::duration_cast<std::chrono::milliseconds>(ls.longest_stall).count()));
    if (o.resume)
      std::fprintf(stderr, "resume: %llu inputs already had a final result in %s (skipped)\n",
                   static_cast<unsigned long long>(skipped), out_name.c_str());
    if (o.shard_n > 1)
      std::fprintf(stderr, "shard %llu/%llu: %llu inputs here, %llu left to the other shards\n",
                   static_cast<unsigned long long>(o.shard_k), static_cast<unsigned long long>(o.shard_n),
                   static_cast<unsigned long long>(read + skipped),
                   static_cast<unsigned long long>(other_shards));
    if (code >= 128 || deadline_hit) {
      std::fprintf(stderr,
                   "stopped early: unfinished inputs have a 'cancelled' result; run again with --resume%s to "
                   "complete the run\n",
                   out_name == "stdout" ? " and --out FILE" : "");
    }
  }
};

// Signals become a descriptor the loop watches. Blocked in this thread
// before any other thread exists, so every thread inherits the mask.
int block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // a closed stdout is a write error, not a silent death
  return ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

}  // namespace

int run_fetch(const fetch_options& given) {
  fetch_options opts = given;  // (--concurrency may be clamped to the descriptor limit)
  auto usage = [](const std::string& msg) {
    std::fprintf(stderr, "spindle fetch: %s\n", msg.c_str());
    return exit_usage;
  };
  if (opts.urls.empty() && opts.urls_file.empty())
    return usage("no URLs: give them as arguments or with --urls FILE (- for stdin)");
  const bool to_stdout = opts.out.empty() || opts.out == "-";
  if (opts.resume && to_stdout) return usage("--resume needs --out FILE (the results of the earlier run)");
  // The results must not go to the --urls file itself (under any name: a
  // symlink, a hard link, /dev/stdin): opening it would truncate the list,
  // or append to what is being read. Checked before anything is opened.
  if (!opts.urls_file.empty()) {
    struct stat in_st {};
    struct stat out_st {};
    const bool in_known =
        opts.urls_file == "-" ? ::fstat(0, &in_st) == 0 : ::stat(opts.urls_file.c_str(), &in_st) == 0;
    const bool out_known = to_stdout ? ::fstat(1, &out_st) == 0 : ::stat(opts.out.c_str(), &out_st) == 0;
    if (in_known && out_known && S_ISREG(in_st.st_mode) && in_st.st_dev == out_st.st_dev &&
        in_st.st_ino == out_st.st_ino) {
      const std::string list = opts.urls_file == "-" ? std::string("stdin") : opts.urls_file;
      return usage((to_stdout ? std::string("stdout") : "--out " + opts.out) +
                   " is the same file as --urls " + list +
                   ": writing the results there would destroy the list; write them to another file");
    }
  }

  // TLS files and credentials: checked now, so a bad path is a usage error
  // before anything starts (not an error per https input).
  if (!opts.user.empty() && opts.user.find(':') == std::string::npos)
    return usage("--user " + opts.user + ": give USER:PASSWORD (there is no password prompt)");
  if (!opts.cacert.empty() || !opts.capath.empty() || !opts.cert.empty() || !opts.key.empty()) {
    net::tls_client_options t;
    t.verify = !opts.insecure;
    t.ca_file = opts.cacert;
    t.ca_path = opts.capath;
    t.certificate_file = opts.cert;
    t.key_file = opts.key;
    try {
      (void)net::tls_context::client(t);
    } catch (const std::exception& e) {
      return usage(std::string("TLS: ") + e.what());
    }
  }

  // The input file: opened now, so a bad path is a usage error before anything starts.
  std::shared_ptr<line_reader> file;
  bool input_is_file = false;
  if (!opts.urls_file.empty()) {
    const int fd = opts.urls_file == "-" ? 0 : ::open(opts.urls_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return usage("--urls " + opts.urls_file + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      ::close(fd);
      return usage("--urls " + opts.urls_file + ": " + std::strerror(EISDIR));
    }
    input_is_file = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    file = std::make_shared<line_reader>(fd, opts.urls_file == "-" ? std::string("stdin") : opts.urls_file);
  }
  resume_scan scan;
  if (opts.resume) {
    try {
      scan = prepare_resume(opts.out);
    } catch (const resume_error& e) {
      std::fprintf(stderr, "spindle fetch: --resume: %s\n", e.what());
      return e.usage() ? exit_usage : exit_io;
    } catch (const std::exception& e) {
      return usage(std::string("--resume: ") + e.what());
    }
    if (!opts.quiet && scan.kept_other + scan.conflicting > 0) {
      std::string kept;
      if (scan.kept_other > 0) kept = std::to_string(scan.kept_other) + " lines that are not results";
      if (scan.conflicting > 0)
        kept += (kept.empty() ? "" : " and ") + std::to_string(scan.conflicting) +
                " repeated results that differ from their index's first";
      std::fprintf(stderr, "spindle fetch: --resume: kept %s in %s, as they are\n", kept.c_str(),
                   opts.out.c_str());
    }
  }
  int out_fd = 1;
  if (!to_stdout) {
    out_fd =
        ::open(opts.out.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (opts.resume ? O_APPEND : O_TRUNC), 0644);
    if (out_fd < 0) return usage("--out " + opts.out + ": " + std::strerror(errno));
  }
  // One descriptor per connection: raise the soft limit to the hard one
  // (Debian's default soft limit, 1,024, is below a --concurrency of 2,000).
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &files);
    (void)::getrlimit(RLIMIT_NOFILE, &files);
  }
  // A window wider than the descriptors allows only turns inputs into
  // 'connect' errors: clamp it (64 descriptors kept for the rest).
  if (files.rlim_cur != RLIM_INFINITY && opts.concurrency + 64 > files.rlim_cur) {
    const std::size_t allowed = files.rlim_cur > 128 ? static_cast<std::size_t>(files.rlim_cur) - 64 : 64;
    if (!opts.quiet)
      std::fprintf(
          stderr,
          "spindle fetch: warning: --concurrency %zu is above what the open-file limit (%llu) allows: "
          "using %zu\n",
          opts.concurrency, static_cast<unsigned long long>(files.rlim_cur), allowed);
    opts.concurrency = allowed;
    opts.per_host = std::min(opts.per_host, allowed);
  }
  const int sfd = block_signals();
  if (sfd < 0) return usage(std::string("signalfd: ") + std::strerror(errno));

  http::client_options co;
  co.max_connections_per_origin = opts.per_host != 0 ? opts.per_host : opts.concurrency;
  co.max_connections_total = std::max<std::size_t>(opts.concurrency, co.max_connections_per_origin);
  co.connect_timeout = opts.timeout;
  co.header_timeout = opts.timeout;
  co.request_timeout = opts.timeout;
  co.max_response_bytes = opts.max_body;
  co.max_redirects = opts.max_redirects;
  co.allow_insecure_redirects = opts.allow_insecure_redirects;
  co.verify_tls = !opts.insecure;
  co.ca_file = opts.cacert;
  co.ca_path = opts.capath;
  co.client_certificate_file = opts.cert;
  co.client_key_file = opts.key;

  event_loop::options lo;
  lo.name = "spindle-fetch";
  // A stall (something held the loop past 100 ms) is one short line when
  // it ends, with a readable task name, and a count in the summary; the
  // library's default line is for servers' logs, not for a terminal.
  const bool quiet = opts.quiet;
  lo.watchdog.on_stall = [quiet](const stall_report& r) {
    if (quiet || r.state != stall_report::phase::ended) return;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(r.held).count();
    std::string what = !r.task.empty() ? r.task : "a task";
    if (r.where.function_name() != nullptr && r.where.function_name()[0] != '\0')
      what += " (" + readable_function_name(r.where.function_name()) + ")";
    std::fprintf(stderr, "spindle fetch: the event loop was held for %lld ms by %s\n",
                 static_cast<long long>(ms), what.c_str());
  };
  event_loop loop(lo);
  int code = exit_ok;
  {
    std::unique_ptr<run_state> st;
    auto run = [&]() -> task<int> {
      st = std::make_unique<run_state>(opts, loop, co, out_fd);
      st->file = file;
      st->input_is_file = input_is_file;
      st->resume = std::move(scan);
      for (const auto& [k, v] : opts.headers) st->base_headers.add(k, v);
      // --user: Basic credentials (an explicit -H Authorization wins); the
      // client drops them on a redirect to another origin.
      if (!opts.user.empty() && !st->base_headers.contains("Authorization"))
        st->base_headers.add("Authorization", "Basic " + base64(opts.user));
      st->ro.timeout = opts.timeout;
      st->ro.keep_body = opts.body;
      st->ro.max_response_bytes = opts.max_body;
      // Non-idempotent methods get one attempt unless --retry-unsafe (the policy sees to it).
      retry_policy policy =
          http::http_retry_policy(opts.method, opts.retries + 1, opts.backoff, opts.retry_unsafe);
      // A Retry-After beyond max_retry_after ends the item with its status
      // instead of a long wait.
      st->base_retryable = std::move(policy.retryable);
      run_state* self = st.get();
      policy.retryable = [self](const std::exception_ptr& e) { return self->retryable(e); };
      st->policy = std::make_shared<const retry_policy>(std::move(policy));
      if (opts.rate > 0) st->rate.emplace(opts.rate, std::max(1.0, opts.rate / 10), "fetch --rate");
      co_return co_await st->main(sfd);
    };
    code = loop.run(run());
    if (st) st->print_summary(code, to_stdout ? std::string("stdout") : opts.out);
    st.reset();
  }
  ::close(sfd);
  if (!to_stdout) ::close(out_fd);
  return code;
}

}  // namespace spindle::cli
