#pragma once
/// \file
/// pg_pool: PostgreSQL through libpq's asynchronous API, driven by a spindle
/// loop's reactor (async_fd), with a small connection pool.
///
/// No thread per query: PQconnectStart/PQconnectPoll connect without
/// blocking, PQsendQueryParams/PQflush send, and PQconsumeInput/PQisBusy/
/// PQgetResult read as the socket becomes readable. A query that is
/// cancelled (a per-sub-query timeout, the caller's cancellation) is
/// cancelled on the server too: its connection is handed to a short
/// cleanup task that sends PQcancel from a small dedicated thread_pool
/// (PQcancel blocks: it connects to the server) and drains the connection;
/// only a connection that is idle and healthy afterwards goes back to the
/// pool, any other is closed. A dirty connection is never reused.

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "spindle/async_fd.hpp"
#include "spindle/error.hpp"
#include "spindle/prometheus.hpp"
#include "spindle/semaphore.hpp"
#include "spindle/task.hpp"
#include "spindle/thread_pool.hpp"

namespace aggregator {

/// The server answered a query with an error (kind `postgres`); sqlstate()
/// is the five-character SQLSTATE ("42P01", "57014", ...).
class pg_error : public spindle::error {
 public:
  pg_error(std::string sqlstate, const std::string& message)
      : error(message), sqlstate_(std::move(sqlstate)) {}
  [[nodiscard]] spindle::error_kind kind_id() const noexcept override {
    return spindle::error_kind::application;
  }
  [[nodiscard]] const char* kind() const noexcept override { return "postgres"; }
  [[nodiscard]] const std::string& sqlstate() const noexcept { return sqlstate_; }

 private:
  std::string sqlstate_;
};
/// The connection could not be made (the server is down, refused, ...).
SPINDLE_DEFINE_ERROR(pg_connect_error, connect);
/// An established connection broke while a query was on it.
SPINDLE_DEFINE_APP_ERROR(pg_connection_lost_error, "connection_lost");

struct pg_pool_options {
  std::string name = "postgres";
  std::string conninfo;
  /// Connections open at most (queries beyond wait for one, FIFO).
  std::size_t max_connections = 8;
  spindle::duration connect_timeout = std::chrono::seconds(3);
  /// How long the cleanup of a cancelled query may take (cancel request
  /// plus draining its result) before its connection is closed instead.
  spindle::duration cancel_grace = std::chrono::seconds(2);
  /// Where PQcancel runs (it blocks). Required; attach it to the loop.
  spindle::thread_pool* cancel_pool = nullptr;
};

struct pg_pool_statistics {
  std::string name;
  std::size_t max_connections = 0;
  std::size_t open = 0;        ///< connections open now
  std::size_t idle = 0;        ///< of those, idle in the pool
  std::size_t cancelling = 0;  ///< of those, being cleaned up after a cancelled query
  std::size_t waiting = 0;     ///< queries waiting for a connection
  std::uint64_t created = 0;
  std::uint64_t reused = 0;
  std::uint64_t connect_failures = 0;
  std::uint64_t queries = 0;
  std::uint64_t query_errors = 0;  ///< the server answered with an error
  std::uint64_t interrupted = 0;   ///< queries cancelled while on the server
  std::uint64_t cancels_sent = 0;  ///< cancel requests the server accepted
  std::uint64_t recycled = 0;      ///< connections clean again after a cancel, back in the pool
  std::uint64_t discarded = 0;     ///< connections closed because broken or dirty
};

/// A pool of libpq connections on one loop.
///
/// **Thread safety:** create, use and shut down on the loop's thread only
/// (statistics() too: take it through the portal).
/// **Cancellation:** query() is a cancellation point everywhere; see the
/// file comment for what happens on the server.
class pg_pool : public std::enable_shared_from_this<pg_pool> {
 public:
  /// On the loop's thread.
  static std::shared_ptr<pg_pool> create(pg_pool_options opts);
  ~pg_pool();
  pg_pool(const pg_pool&) = delete;
  pg_pool& operator=(const pg_pool&) = delete;

  /// Runs one statement with text parameters ($1, $2, ...) and returns its
  /// rows as an array of objects (ints, floats, bools and NULL typed; other
  /// types as text). Throws pg_connect_error, pg_connection_lost_error,
  /// pg_error, and cancelled_error/timeout_error.
  spindle::task<nlohmann::json> query(std::string sql, std::vector<std::string> params);

  /// Closes every idle connection.
  void close_idle() noexcept;
  /// Closes idle connections and makes every connection in use close when
  /// it is released. Later queries fail with shutdown_error.
  void shutdown() noexcept;

  [[nodiscard]] pg_pool_statistics statistics() const;

  struct conn;
  struct counters;

 private:
  explicit pg_pool(pg_pool_options opts);
  struct lease;
  spindle::task<lease> acquire();
  spindle::task<std::unique_ptr<conn>> connect();
  void release(lease l) noexcept;
  // `self` is this pool, kept alive by the cleanup task.
  spindle::task<void> cancel_and_recycle(std::shared_ptr<pg_pool> self, lease l);
  spindle::task<bool> cancel_and_drain(conn& c);

  pg_pool_options opts_;
  std::shared_ptr<counters> counters_;
  spindle::semaphore permits_;
  std::vector<std::unique_ptr<conn>> idle_;
  bool closed_ = false;
};

/// Adds spindle_pg_pool_* families, labelled pool="<name>".
void add_metrics(spindle::prometheus_exposition& e, const pg_pool_statistics& s);

}  // namespace aggregator
