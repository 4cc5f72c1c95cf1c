#pragma once
/// \file
/// sqlite_store: SQLite through its ordinary blocking API, on its own named
/// spindle::thread_pool — the honest way to use a blocking library from a
/// loop: the loop never waits for SQLite, and SQLite's slowness can only
/// fill its own pool.

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "spindle/error.hpp"
#include "spindle/task.hpp"
#include "spindle/thread_pool.hpp"

struct sqlite3;

namespace aggregator {

/// SQLite reported an error (kind `sqlite`); code() is SQLite's result code.
class sqlite_error : public spindle::error {
 public:
  sqlite_error(int code, const std::string& message) : error(message), code_(code) {}
  [[nodiscard]] spindle::error_kind kind_id() const noexcept override {
    return spindle::error_kind::application;
  }
  [[nodiscard]] const char* kind() const noexcept override { return "sqlite"; }
  [[nodiscard]] int code() const noexcept { return code_; }

 private:
  int code_;
};

/// One database file, one read-only connection per pool thread (opened up
/// front, so the descriptor count is fixed), queries on `pool`.
///
/// Every connection has a `sleep_ms(n)` SQL function (the benchmark's
/// stand-in for a slow query) and a progress handler; both stop when the
/// job's stop token is set, so a cancelled or timed-out query ends with
/// SQLITE_INTERRUPT instead of holding its pool thread.
///
/// **Thread safety:** query() from tasks on any loop; the rest from any thread.
/// **Cancellation:** a queued query never runs; a running one is interrupted.
class sqlite_store {
 public:
  sqlite_store(const std::string& path, spindle::thread_pool& pool);
  ~sqlite_store();
  sqlite_store(const sqlite_store&) = delete;
  sqlite_store& operator=(const sqlite_store&) = delete;

  /// Creates (or replaces) the example's database at `path` with seed data
  /// for users 1..1000.
  static void create_seeded(const std::string& path);

  /// Runs `SELECT sleep_ms(delay_ms)` when delay_ms > 0, then `sql` with
  /// integer parameters ?1, ?2, ...; returns the rows as objects.
  spindle::task<nlohmann::json> query(std::string sql, std::vector<std::int64_t> params, int delay_ms);

  [[nodiscard]] spindle::thread_pool& pool() noexcept { return *pool_; }

  struct connection;

 private:
  nlohmann::json run(std::stop_token stop, const std::string& sql, const std::vector<std::int64_t>& params,
                     int delay_ms);
  std::unique_ptr<connection> take();
  void give_back(std::unique_ptr<connection> c);

  spindle::thread_pool* pool_;
  std::mutex mutex_;  // guards free_: pool threads take and return connections
  std::vector<std::unique_ptr<connection>> free_;
};

}  // namespace aggregator
