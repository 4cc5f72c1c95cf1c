#pragma once
/// \file
/// The aggregator service: a threaded HTTP front (front_server) whose
/// synchronous handlers fan out through one shared background loop.
///
///     GET /graph/{id}   12 sub-queries — 4 PostgreSQL, 4 SQLite, 4 HTTP —
///                       with gather_settled and a per-sub-query timeout;
///                       one JSON document with every result and a typed
///                       error for each sub-query that failed (200, never
///                       a 500 for a backend's failure).
///       ?mode=sequential    one sub-query after another, for comparison
///       ?timeout_ms=N       per-sub-query timeout (default: options)
///       ?delay_ms=N         added latency in every backend (pg_sleep, the
///                           SQLite sleep_ms() function, the mock's delay);
///                           pg_delay_ms, sqlite_delay_ms, http_delay_ms
///                           set one backend's
///     GET /metrics      Prometheus text: the loop, the portal, the SQLite
///                       and cancel pools, the PostgreSQL pool, the HTTP
///                       client pool, the front server, sub-query outcomes
///     GET /healthz      "ok"

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "front_server.hpp"
#include "mock_api.hpp"
#include "spindle/background_loop.hpp"
#include "spindle/http/message.hpp"
#include "spindle/thread_pool.hpp"
#include "sqlite_store.hpp"
#include "target.hpp"

namespace aggregator {

struct service_options {
  /// libpq connection string (scripts/pg-cluster.sh conninfo STATE).
  std::string pg_conninfo;
  /// Base URL of the HTTP backend; empty: start the built-in mock API.
  std::string api_base_url;
  /// SQLite database (created and seeded if it does not exist); empty: a
  /// fresh seeded file in a temporary directory.
  std::string sqlite_path;
  std::uint16_t port = 0;  ///< 0: ephemeral (see port())
  std::size_t workers = 16;
  std::size_t pg_connections = 8;
  std::size_t sqlite_threads = 4;
  std::size_t http_connections = 64;  ///< to the HTTP backend
  std::chrono::milliseconds subquery_timeout{1000};
  /// The whole fan-out (portal.call's timeout): past it the request is
  /// cancelled on the loop and answered 504.
  std::chrono::milliseconds request_timeout{10'000};
};

/// **Thread safety:** every member is safe from any thread except the
/// service's own loop (handle() blocks on the portal).
class service {
 public:
  /// Starts the loop, the pools, the mock API if needed, and the front.
  explicit service(service_options opts);
  /// stop().
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return front_.port(); }
  [[nodiscard]] const std::string& api_base_url() const noexcept { return api_base_url_; }

  /// The synchronous handler the front's workers call.
  spindle::http::response handle(const spindle::http::request& req);
  /// The /metrics text.
  [[nodiscard]] std::string metrics();
  [[nodiscard]] front_statistics front_stats() const { return front_.statistics(); }
  /// Errors the portal raised to handlers, by kind (`timeout`, `shutdown`;
  /// `wrong_thread` and `loop_running` must never appear).
  [[nodiscard]] std::map<std::string, std::uint64_t> portal_errors() const;
  /// Closes idle pooled connections (PostgreSQL and HTTP): for tests that
  /// compare descriptor counts.
  void close_idle_connections();

  /// Stops the front (in-flight requests finish), then the loop (its
  /// shutdown report goes to stderr unless clean), then the rest. Idempotent.
  void stop();

  struct backends;

 private:
  spindle::http::response graph(const std::string& id, const request_target& t);

  service_options opts_;
  std::unique_ptr<mock_api> mock_;
  std::string api_base_url_;
  std::string temp_dir_;  // ours to delete, when we made the SQLite file
  spindle::background_loop bg_;
  std::unique_ptr<spindle::thread_pool> sqlite_pool_;
  std::unique_ptr<spindle::thread_pool> cancel_pool_;
  std::unique_ptr<sqlite_store> sqlite_;
  std::shared_ptr<backends> backends_;  // loop-side state: touched on the loop only
  front_server front_;
  mutable std::mutex errors_mutex_;  // guards portal_errors_ (worker threads)
  std::map<std::string, std::uint64_t> portal_errors_;
  std::mutex stop_mutex_;
  bool stopped_ = false;
};

}  // namespace aggregator
