// HTTP/1.1 benchmarks (issue #6): spindle's server under wrk, and spindle's
// client against a loopback server. Peers: bench/peers/aiohttp_http.py and
// bench/peers/hyper_http; bench/run_http.sh runs them all.
//
//   http_bench server --port P [--seconds S]
//       GET / -> 200 "hello" (keep-alive) on 127.0.0.1:P until SIGINT/SIGTERM
//       or S seconds (default 60); then a graceful stop.
//   http_bench client --url URL --requests N --concurrency C [--repeat K]
//       one loop, one http::client (max_connections_per_origin = C), N GETs
//       with at most C in flight (gather_settled, limit C), every response
//       checked to be 200 "hello"; one JSON line per repeat:
//       {"impl":"spindle","op":"http_client_c<C>","ns_per_op":wall/N,"note":...}
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <ranges>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "spindle/as_completed.hpp"
#include "spindle/error.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/gather.hpp"
#include "spindle/http/client.hpp"
#include "spindle/http/group_server.hpp"
#include "spindle/http/server.hpp"
#include "spindle/http/url.hpp"
#include "spindle/loop_group.hpp"
#include "spindle/net/address.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/sleep.hpp"

namespace {

using namespace spindle;
using namespace std::chrono_literals;

volatile std::sig_atomic_t g_stop_requested = 0;

extern "C" void on_stop_signal(int /*sig*/) { g_stop_requested = 1; }

task<http::response> hello(http::request& req) {
  http::response r;
  if (req.method == "GET" && req.target == "/") {
    r.status = 200;
    r.headers.add("Content-Type", "text/plain");
    r.body = "hello";
  } else {
    r.status = 404;
  }
  co_return r;
}

task<int> run_server(std::uint16_t port, int seconds) {
  event_loop& loop = *event_loop::current();
  http::server srv(hello);
  net::tcp_listener listener = net::tcp_listener::bind(net::socket_address::loopback_v4(port));
  std::fprintf(stderr, "http_bench: serving on 127.0.0.1:%u for at most %d s\n",
               static_cast<unsigned>(listener.local_address().port()), seconds);
  auto running = loop.spawn(srv.serve(std::move(listener)), "http");
  // Bounded: at most `seconds` / 50 ms polls of the signal flag.
  const time_point deadline = loop.now() + std::chrono::seconds(seconds);
  while (g_stop_requested == 0 && loop.now() < deadline) {
    co_await sleep_for(50ms);
  }
  srv.stop();
  co_await running;
  const http::server_statistics s = srv.statistics();
  std::fprintf(stderr, "http_bench: stopped; %llu connections, %llu requests, %llu bad\n",
               static_cast<unsigned long long>(s.connections_accepted),
               static_cast<unsigned long long>(s.requests), static_cast<unsigned long long>(s.bad_requests));
  co_return 0;
}

// --loops N (N > 1): a loop_group of N pinned loops, one acceptor each on
// the same port (http::group_server); this thread only waits.
int run_group_server(std::uint16_t port, int seconds, std::size_t loops) {
  loop_group group({.loops = loops, .name = "http", .pin = true});
  http::group_server_options o;
  o.address = net::socket_address::loopback_v4(port);
  http::group_server srv(group, hello, o);
  std::fprintf(stderr, "http_bench: serving on 127.0.0.1:%u with %zu loops for at most %d s\n",
               static_cast<unsigned>(srv.port()), loops, seconds);
  for (int i = 0; i < seconds * 20 && g_stop_requested == 0; ++i) std::this_thread::sleep_for(50ms);
  std::uint64_t requests = 0;
  std::string per_loop;
  for (const auto& s : srv.statistics()) {
    requests += s.requests;
    if (!per_loop.empty()) per_loop += '/';
    per_loop += std::to_string(s.requests);
  }
  srv.stop();
  group.stop();
  std::fprintf(stderr, "http_bench: stopped; %llu requests (per loop %s)\n",
               static_cast<unsigned long long>(requests), per_loop.c_str());
  return 0;
}

std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const spindle::error& x) {
    return std::string(x.kind()) + ": " + x.what();
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

// Runs `n` GETs, at most `c` in flight; returns the number of bad responses.
// As the hyper peer does: the URL parsed once, C requests in flight, each
// response checked as it completes and dropped (not all N kept).
task<std::size_t> fetch_all(http::client& cl, const http::url& target, std::size_t n, std::size_t c,
                            std::string& first_error) {
  fanout_options fo;
  fo.limit = c;
  auto one = [&](std::size_t) { return cl.send("GET", target); };
  auto stream = as_completed(std::views::iota(std::size_t{0}, n), one, fo);
  std::size_t bad = 0;
  while (auto done = co_await stream.next()) {
    const outcome<http::response>& o = done->result;
    if (!o.ok()) {
      if (first_error.empty()) first_error = describe(o.error());
      ++bad;
    } else if (o.value().status != 200 || o.value().body != "hello") {
      if (first_error.empty())
        first_error = "unexpected response: status " + std::to_string(o.value().status);
      ++bad;
    }
  }
  co_return bad;
}

task<int> run_client(std::string url, std::size_t n, std::size_t c, int repeat) {
  http::client_options o;
  o.max_connections_per_origin = c;
  o.max_connections_total = c;
  http::client cl(o);
  std::string err;
  // Warm-up (not timed): opens the C connections, as for every peer.
  const http::url target = http::url::parse(url);
  std::size_t bad = co_await fetch_all(cl, target, std::min<std::size_t>(n, 1000), c, err);
  for (int r = 0; r < repeat && bad == 0; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    bad += co_await fetch_all(cl, target, n, c, err);
    const auto t1 = std::chrono::steady_clock::now();
    const double ns =
        static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    const http::client_statistics s = cl.statistics();
    std::printf(
        "{\"impl\": \"spindle\", \"op\": \"http_client_c%zu\", \"ns_per_op\": %.1f, \"note\": "
        "\"spindle http::client; %zu GETs, %zu in flight, %llu connections\"}\n",
        c, ns / static_cast<double>(n), n, c, static_cast<unsigned long long>(s.created));
    std::fflush(stdout);
  }
  if (bad != 0) {
    std::fprintf(stderr, "http_bench: %zu bad responses; first: %s\n", bad, err.c_str());
    co_return 1;
  }
  co_return 0;
}

[[noreturn]] void usage() {
  std::fputs(
      "usage: http_bench server --port P [--seconds S] [--loops N]\n"
      "       http_bench client --url URL --requests N --concurrency C [--repeat K]\n",
      stderr);
  std::exit(2);
}

long number(const char* s, long lo, long hi) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < lo || v > hi) usage();
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  const std::string_view mode = argv[1];
  long port = -1;
  long seconds = 60;
  long requests = 20000;
  long concurrency = 64;
  long repeat = 1;
  long loops = 1;
  std::string url;
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (i + 1 >= argc) usage();
    const char* v = argv[++i];
    if (a == "--port") {
      port = number(v, 0, 65535);
    } else if (a == "--seconds") {
      seconds = number(v, 1, 24 * 3600);
    } else if (a == "--url") {
      url = v;
    } else if (a == "--requests") {
      requests = number(v, 1, 100'000'000);
    } else if (a == "--concurrency") {
      concurrency = number(v, 1, 10'000);
    } else if (a == "--loops") {
      loops = number(v, 1, 256);
    } else if (a == "--repeat") {
      repeat = number(v, 1, 1000);
    } else {
      usage();
    }
  }
  try {
    event_loop loop;
    if (mode == "server") {
      if (port < 0) usage();
      struct sigaction sa {};
      sa.sa_handler = on_stop_signal;
      sigemptyset(&sa.sa_mask);
      sigaction(SIGINT, &sa, nullptr);
      sigaction(SIGTERM, &sa, nullptr);
      if (loops > 1)
        return run_group_server(static_cast<std::uint16_t>(port), static_cast<int>(seconds),
                                static_cast<std::size_t>(loops));
      return loop.run(run_server(static_cast<std::uint16_t>(port), static_cast<int>(seconds)));
    }
    if (mode == "client") {
      if (url.empty()) usage();
      return loop.run(run_client(url, static_cast<std::size_t>(requests),
                                 static_cast<std::size_t>(concurrency), static_cast<int>(repeat)));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_bench: %s\n", e.what());
    return 1;
  }
  usage();
}
