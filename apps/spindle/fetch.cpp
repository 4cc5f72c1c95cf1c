// `spindle fetch`: option handling, input reading and output writing over
// the library's fetch engine (spindle/http/fetch.hpp), on one event loop.
// The inputs stream in from the arguments and the --urls file (read on a
// one-thread pool, so a slow pipe never blocks the loop), filtered by
// --shard and --resume, as the engine's source; the results go to a
// result_writer as its sink, and a flusher task writes each batch once the
// loop's ready tasks have run. SIGINT or SIGTERM (signalfd) and a failed
// write of the results stop the engine; --deadline is the engine's own.
// With --loops N the fetching runs on N loops (fetch_loops.cpp).
// Nothing read is ever without a result (after a failed write, the results
// not written are counted as lost).

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
#include <memory>

#include "body_files.hpp"
#include "fetch_loops.hpp"
#include "fetch_source.hpp"
#include "line_reader.hpp"
#include "output.hpp"
#include "parse.hpp"
#include "spindle/async_fd.hpp"
#include "spindle/diagnostics.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/http/client.hpp"
#include "spindle/http/fetch.hpp"
#include "spindle/net/tls.hpp"
#include "spindle/sleep.hpp"
#include "spindle/thread_pool.hpp"
#include "spindle/watchdog.hpp"

namespace spindle::cli {

namespace {

// The results, as JSON lines through the writer.
class cli_sink final : public http::fetch_sink {
 public:
  explicit cli_sink(result_writer& w) : out_(w) {}
  void deliver(http::fetch_result&& r) override { out_.add(r); }

 private:
  result_writer& out_;
};

http::fetch_options engine_options(const fetch_options& o, http::fetch_body_store* files) {
  http::fetch_options e;
  e.body_store = files;
  e.concurrency = o.concurrency;
  e.per_host = o.per_host;
  e.timeout = o.timeout;
  if (o.deadline > duration::zero()) e.deadline = o.deadline;
  e.deadline_message =
      "the run's --deadline of " + format_duration(o.deadline) + " passed before this input finished";
  e.retries = o.retries;
  e.backoff = o.backoff;
  e.max_retry_after = o.max_retry_after;
  e.retry_unsafe = o.retry_unsafe;
  e.rate = o.rate;
  e.method = o.method;
  for (const auto& [k, v] : o.headers) e.request_headers.add(k, v);
  // --user: Basic credentials (an explicit -H Authorization wins); the
  // client drops them on a redirect to another origin.
  if (!o.user.empty() && !e.request_headers.contains("Authorization"))
    e.request_headers.add("Authorization", "Basic " + base64(o.user));
  e.body = o.data;
  e.keep_body = o.body;
  e.keep_headers = o.include_headers;
  e.max_body = o.max_body;
  e.ordered = o.ordered;
  e.client.max_redirects = o.max_redirects;
  e.client.allow_insecure_redirects = o.allow_insecure_redirects;
  e.client.verify_tls = !o.insecure;
  e.client.ca_file = o.cacert;
  e.client.ca_path = o.capath;
  e.client.client_certificate_file = o.cert;
  e.client.client_key_file = o.key;
  return e;
}

struct run_state {
  const fetch_options& o;
  event_loop& loop;
  std::optional<http::fetcher> engine;  // one loop
  cli_source source;
  result_writer out;
  cli_sink sink{out};
  std::unique_ptr<loop_fetch> loops;  // --loops N > 1
  time_point started;
  std::uint64_t total_inputs = 0;  // counted ahead for the progress bar (a regular file); 0: unknown
  bool output_failed = false;      // the results could not be written: the run was stopped
  int signal = 0;
  http::fetch_statistics stats;

  run_state(const fetch_options& opts, event_loop& l, std::shared_ptr<line_reader> file, bool is_file,
            const resume_scan& done, int out_fd, http::fetch_body_store* files)
      : o(opts),
        loop(l),
        source(opts, l, std::move(file), is_file, done),
        out(out_fd, line_fields{opts.body, opts.include_headers}),
        started(l.now()) {
    if (opts.loops > 1) {
      loops = std::make_unique<loop_fetch>(opts, l, source, out, engine_options(opts, files));
    } else {
      engine.emplace(engine_options(opts, files));
    }
  }

  void stop_all(const std::string& reason) {
    if (loops) {
      loops->stop(reason);
    } else {
      engine->stop(reason);
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
        stop_all(std::string("the output failed (") + std::strerror(out.error()) +
                 ") before this input finished");
      }
    }
  }

  void draw_progress(bool final) {
    progress_counts c;
    if (loops) {
      c = loops->counts();
    } else {
      const http::fetch_statistics& s = engine->statistics();
      c.ok = s.ok;
      c.failed = s.failed;
      c.read = s.read;
      c.in_flight = s.in_flight;
      c.input_done = s.input_done;
    }
    c.total = total_inputs;
    c.secs = std::chrono::duration<double>(loop.now() - started).count();
    std::fputs(final ? "\r\x1b[K" : progress_line(c).c_str(), stderr);
    std::fflush(stderr);
  }

  // For the progress bar: the inputs of a regular file that this run will
  // give results for (this shard's, not already done by --resume), counted
  // on a thread of their own with the reader's rules, ahead of the reading.
  task<void> count_inputs(const resume_scan& done_inputs) {
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
    const shard_filter shard = shard_of(o);
    // (Copies: an abandoned job may outlive this run's state.)
    auto done = std::make_shared<const resume_scan>(done_inputs);
    auto count = [file_lines, first, shard, done] {
      std::uint64_t here = 0;
      std::uint64_t index = first;
      std::vector<input_line> lines;
      for (bool more = true; more;) {
        lines.clear();
        more = file_lines->read_batch(lines, 4096);
        for (std::size_t i = 0; i < lines.size(); ++i, ++index)
          if (shard.mine(index, lines[i].text) && !done->has(index)) ++here;
      }
      return here;
    };
    std::uint64_t args_here = 0;
    for (std::uint64_t i = 0; i < first; ++i)
      if (shard.mine(i, o.urls[i]) && !done_inputs.has(i)) ++args_here;
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
      stop_all(std::string("interrupted by ") + name + " before this input finished");
    }
  }

  task<int> main(int sfd, bool input_is_file, const resume_scan& done_inputs) {
    auto flushing = loop.spawn(flusher(), "fetch-flusher");
    auto signals = loop.spawn(watch_signals(sfd), "fetch-signals");
    std::optional<join_handle<void>> progressing, counting;
    const bool show_progress = o.progress == 1 || (o.progress == -1 && !o.quiet && ::isatty(2) != 0);
    if (show_progress) {
      progressing.emplace(loop.spawn(progress(), "fetch-progress"));
      if (input_is_file) counting.emplace(loop.spawn(count_inputs(done_inputs), "fetch-count"));
    }
    if (loops) {
      stats = co_await loops->run();
    } else {
      stats = co_await engine->run(source, sink);
    }
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
    if (!source.error().empty()) co_return exit_usage;
    co_return stats.failed > 0 ? exit_failed : exit_ok;
  }

  void print_summary(int code, const std::string& out_name) {
    const double secs = std::chrono::duration<double>(loop.now() - started).count();
    const std::uint64_t ok = stats.ok, failed = stats.failed;
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
    if (!source.error().empty()) std::fprintf(stderr, "spindle fetch: reading %s\n", source.error().c_str());
    if (out.error() != 0)
      std::fprintf(
          stderr, "spindle fetch: writing %s: %s: the run was stopped; %llu results written, %llu lost\n",
          out_name.c_str(), std::strerror(out.error()), static_cast<unsigned long long>(out.written()),
          static_cast<unsigned long long>(out.lost()));
    if (o.quiet) return;
    std::fprintf(stderr, "latency_ms p50=%.1f p90=%.1f p99=%.1f max=%.1f\n", stats.latency.quantile(0.5),
                 stats.latency.quantile(0.9), stats.latency.quantile(0.99), stats.latency.max());
    std::string errs;
    for (const auto& [kind, n] : stats.errors) errs += " " + kind + "=" + std::to_string(n);
    std::fprintf(stderr, "errors%s\n", errs.empty() ? " none" : errs.c_str());
    const http::client_statistics cs =
        loops ? loops->client_statistics() : engine->http_client().statistics();
    std::fprintf(stderr, "retries=%llu connections opened=%llu reused=%llu\n",
                 static_cast<unsigned long long>(stats.retries), static_cast<unsigned long long>(cs.created),
                 static_cast<unsigned long long>(cs.reused));
    const loop_statistics ls = loop.statistics();
    const std::uint64_t stalls = ls.stalls + (loops ? loops->stalls() : 0);
    const duration longest = loops ? std::max(ls.longest_stall, loops->longest_stall()) : ls.longest_stall;
    if (stalls > 0)
      std::fprintf(
          stderr, "stalls=%llu longest_ms=%lld (the event loop was held past 100 ms)\n",
          static_cast<unsigned long long>(stalls),
          static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(longest).count()));
    if (loops)
      std::fprintf(stderr, "loops=%zu inputs per loop: %s\n", o.loops, loops->inputs_per_loop().c_str());
    if (o.resume)
      std::fprintf(stderr, "resume: %llu inputs already had a final result in %s (skipped)\n",
                   static_cast<unsigned long long>(source.skipped), out_name.c_str());
    if (o.shard_n > 1)
      std::fprintf(stderr, "shard %llu/%llu: %llu inputs here, %llu left to the other shards\n",
                   static_cast<unsigned long long>(o.shard_k), static_cast<unsigned long long>(o.shard_n),
                   static_cast<unsigned long long>(stats.read + source.skipped),
                   static_cast<unsigned long long>(source.other_shards));
    if (code >= 128 || stats.deadline_hit) {
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
    std::unique_ptr<body_files> saved_bodies;  // (before st: the engine uses it)
    std::string files_error;
    std::unique_ptr<run_state> st;
    auto run = [&]() -> task<int> {
      if (!opts.output_dir.empty()) {
        try {
          saved_bodies = std::make_unique<body_files>(
              loop, opts.output_dir,
              name_template(opts.name_template.empty() ? "{index}" : opts.name_template), opts.shard_k);
        } catch (const std::exception& e) {
          files_error = e.what();
          co_return exit_usage;
        }
      }
      st = std::make_unique<run_state>(opts, loop, file, input_is_file, scan, out_fd, saved_bodies.get());
      co_return co_await st->main(sfd, input_is_file, scan);
    };
    code = loop.run(run());
    if (!files_error.empty())
      std::fprintf(stderr, "spindle fetch: --output-dir %s: %s\n", opts.output_dir.c_str(),
                   files_error.c_str());
    if (st) st->print_summary(code, to_stdout ? std::string("stdout") : opts.out);
    st.reset();
  }
  ::close(sfd);
  if (!to_stdout) ::close(out_fd);
  return code;
}

}  // namespace spindle::cli
