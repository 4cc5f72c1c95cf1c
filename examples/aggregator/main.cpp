// aggregator: a threaded HTTP service fanning out through a portal to
// PostgreSQL, SQLite and an HTTP API (see README.md in this directory).
//
//   scripts/pg-cluster.sh start /tmp/pg.state
//   aggregator --pg "$(scripts/pg-cluster.sh conninfo /tmp/pg.state)" --port 8080
//   curl -s localhost:8080/graph/7 | jq .
//
// Runs until SIGINT or SIGTERM, then stops gracefully.

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "service.hpp"
#include "target.hpp"

namespace {

constexpr const char* usage = R"(usage: aggregator --pg CONNINFO [options]

  --pg CONNINFO         libpq connection string (required; see scripts/pg-cluster.sh)
  --port N              port on 127.0.0.1 (default 8080; 0: ephemeral, printed)
  --workers N           front worker threads (default 16)
  --pg-connections N    PostgreSQL pool size (default 8)
  --sqlite-threads N    SQLite pool threads (default 4)
  --http-connections N  connections to the HTTP API (default 64)
  --api URL             HTTP backend base URL (default: start the built-in mock API)
  --sqlite PATH         SQLite database, seeded if it does not exist (default: a temporary one)
  --timeout-ms N        per-sub-query timeout (default 1000)

GET /graph/{id}[?mode=sequential][&delay_ms=N][&timeout_ms=N], GET /metrics, GET /healthz
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "aggregator: %s\n\n%s", message.c_str(), usage);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  aggregator::service_options opts;
  opts.port = 8080;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (i + 1 >= argc) usage_error(std::string("missing value for ") + argv[i]);
    const std::string value = argv[++i];
    auto number = [&](long long max) {
      auto v = aggregator::parse_int(value, 0, max);
      if (!v) usage_error("bad value for " + std::string(arg) + ": " + value);
      return *v;
    };
    if (arg == "--pg") {
      opts.pg_conninfo = value;
    } else if (arg == "--port") {
      opts.port = static_cast<std::uint16_t>(number(65535));
    } else if (arg == "--workers") {
      opts.workers = static_cast<std::size_t>(number(4096));
    } else if (arg == "--pg-connections") {
      opts.pg_connections = static_cast<std::size_t>(number(1000));
    } else if (arg == "--sqlite-threads") {
      opts.sqlite_threads = static_cast<std::size_t>(number(256));
    } else if (arg == "--http-connections") {
      opts.http_connections = static_cast<std::size_t>(number(10'000));
    } else if (arg == "--api") {
      opts.api_base_url = value;
    } else if (arg == "--sqlite") {
      opts.sqlite_path = value;
    } else if (arg == "--timeout-ms") {
      opts.subquery_timeout = std::chrono::milliseconds(number(600'000));
    } else {
      usage_error("unknown option " + std::string(arg));
    }
  }
  if (opts.pg_conninfo.empty()) usage_error("--pg is required");
  if (opts.workers == 0 || opts.pg_connections == 0 || opts.sqlite_threads == 0)
    usage_error("--workers, --pg-connections and --sqlite-threads must be at least 1");

  // Signals are taken synchronously by sigwait below: block them before
  // any thread starts, so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    aggregator::service svc(opts);
    std::printf("aggregator: listening on http://127.0.0.1:%u (workers=%zu, api=%s)\n", svc.port(),
                opts.workers, svc.api_base_url().c_str());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&signals, &sig);
    std::printf("aggregator: %s, stopping\n", strsignal(sig));
    svc.stop();
    const auto s = svc.front_stats();
    std::printf("aggregator: served %llu requests (%llu 5xx)\n", static_cast<unsigned long long>(s.requests),
                static_cast<unsigned long long>(s.responses_5xx));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aggregator: %s\n", e.what());
    return 1;
  }
  return 0;
}
