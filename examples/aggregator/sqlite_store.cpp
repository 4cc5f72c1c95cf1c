#include "sqlite_store.hpp"

#include <sqlite3.h>

#include <thread>
#include <utility>

namespace aggregator {

/// A connection and the stop token of the job using it (read by the
/// sleep function and the progress handler, on the same pool thread).
struct sqlite_store::connection {
  sqlite3* db = nullptr;
  std::stop_token stop;
  ~connection() {
    if (db != nullptr) sqlite3_close_v2(db);
  }
};

namespace {

void check(sqlite3* db, int rc, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    throw sqlite_error(rc,
                       std::string(what) + ": " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

// sleep_ms(n): sleeps n milliseconds in 2 ms slices, stopping early when
// the job's stop token is set (the query then fails with SQLITE_INTERRUPT).
void sleep_ms(sqlite3_context* ctx, int /*argc*/, sqlite3_value** argv) {
  auto* c = static_cast<sqlite_store::connection*>(sqlite3_user_data(ctx));
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(sqlite3_value_int64(argv[0]));
  while (std::chrono::steady_clock::now() < until) {
    if (c->stop.stop_requested()) {
      sqlite3_result_error_code(ctx, SQLITE_INTERRUPT);
      return;
    }
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        std::chrono::milliseconds(2), until - std::chrono::steady_clock::now()));
  }
  sqlite3_result_int(ctx, 0);
}

int on_progress(void* arg) {
  return static_cast<sqlite_store::connection*>(arg)->stop.stop_requested() ? 1 : 0;
}

nlohmann::json column_value(sqlite3_stmt* st, int col) {
  switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER: return static_cast<std::int64_t>(sqlite3_column_int64(st, col));
    case SQLITE_FLOAT: return sqlite3_column_double(st, col);
    case SQLITE_NULL: return nullptr;
    default: return reinterpret_cast<const char*>(sqlite3_column_text(st, col));
  }
}

struct statement {
  sqlite3_stmt* st = nullptr;
  ~statement() { sqlite3_finalize(st); }
};

}  // namespace

sqlite_store::sqlite_store(const std::string& path, spindle::thread_pool& pool) : pool_(&pool) {
  const std::size_t n = pool.statistics().threads;
  for (std::size_t i = 0; i < n; ++i) {
    auto c = std::make_unique<connection>();
    const int rc = sqlite3_open_v2(path.c_str(), &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
    check(c->db, rc, "sqlite3_open_v2");
    check(c->db,
          sqlite3_create_function(c->db, "sleep_ms", 1, SQLITE_UTF8, c.get(), &sleep_ms, nullptr, nullptr),
          "sqlite3_create_function");
    sqlite3_progress_handler(c->db, 1000, &on_progress, c.get());
    free_.push_back(std::move(c));
  }
}

sqlite_store::~sqlite_store() = default;

void sqlite_store::create_seeded(const std::string& path) {
  std::remove(path.c_str());
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  std::unique_ptr<sqlite3, decltype(&sqlite3_close_v2)> guard(db, &sqlite3_close_v2);
  check(db, rc, "sqlite3_open_v2");
  const char* seed = R"sql(
    PRAGMA journal_mode = DELETE;
    BEGIN;
    CREATE TABLE prefs (user_id INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                        PRIMARY KEY (user_id, key));
    CREATE TABLE tags (user_id INTEGER NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (user_id, tag));
    CREATE TABLE views (user_id INTEGER NOT NULL, item_id INTEGER NOT NULL, seen_at INTEGER NOT NULL);
    CREATE INDEX views_user ON views (user_id);
    CREATE TABLE scores (user_id INTEGER PRIMARY KEY, score REAL NOT NULL, tier TEXT NOT NULL);
    WITH RECURSIVE u(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM u WHERE id < 1000)
    INSERT INTO prefs SELECT id, 'language', CASE id % 3 WHEN 0 THEN 'en' WHEN 1 THEN 'pt' ELSE 'ja' END FROM u
      UNION ALL SELECT id, 'theme', CASE id % 2 WHEN 0 THEN 'dark' ELSE 'light' END FROM u;
    WITH RECURSIVE u(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM u WHERE id < 1000)
    INSERT INTO tags SELECT id, 'tag-' || (id % 7) FROM u UNION SELECT id, 'tag-' || (id % 11 + 7) FROM u;
    WITH RECURSIVE v(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM v WHERE n < 20000)
    INSERT INTO views SELECT 1 + n % 1000, 1 + (n * 7) % 500, 1700000000 + n FROM v;
    WITH RECURSIVE u(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM u WHERE id < 1000)
    INSERT INTO scores SELECT id, (id * 37 % 1000) / 10.0,
      CASE WHEN id * 37 % 1000 >= 900 THEN 'gold' WHEN id * 37 % 1000 >= 500 THEN 'silver' ELSE 'bronze' END
      FROM u;
    COMMIT;
  )sql";
  char* err = nullptr;
  if (sqlite3_exec(db, seed, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string message = err != nullptr ? err : "seed failed";
    sqlite3_free(err);
    throw sqlite_error(SQLITE_ERROR, "seeding " + path + ": " + message);
  }
}

std::unique_ptr<sqlite_store::connection> sqlite_store::take() {
  std::lock_guard lock(mutex_);
  // One connection per pool thread and at most that many jobs run at
  // once, so the list is never empty here.
  if (free_.empty()) throw sqlite_error(SQLITE_BUSY, "no free SQLite connection");
  auto c = std::move(free_.back());
  free_.pop_back();
  return c;
}

void sqlite_store::give_back(std::unique_ptr<connection> c) {
  c->stop = {};
  std::lock_guard lock(mutex_);
  free_.push_back(std::move(c));
}

nlohmann::json sqlite_store::run(std::stop_token stop, const std::string& sql,
                                 const std::vector<std::int64_t>& params, int delay_ms) {
  std::unique_ptr<connection> c = take();
  c->stop = std::move(stop);
  struct returner {
    sqlite_store* s;
    std::unique_ptr<connection>& c;
    ~returner() { s->give_back(std::move(c)); }
  } give_back_on_exit{this, c};

  auto execute = [&](const char* text, const std::vector<std::int64_t>& args) {
    statement st;
    check(c->db, sqlite3_prepare_v2(c->db, text, -1, &st.st, nullptr), "prepare");
    for (std::size_t i = 0; i < args.size(); ++i)
      check(c->db, sqlite3_bind_int64(st.st, static_cast<int>(i + 1), args[i]), "bind");
    nlohmann::json rows = nlohmann::json::array();
    for (;;) {
      const int rc = sqlite3_step(st.st);
      if (rc == SQLITE_DONE) break;
      check(c->db, rc, "step");
      nlohmann::json row = nlohmann::json::object();
      for (int j = 0; j < sqlite3_column_count(st.st); ++j)
        row[sqlite3_column_name(st.st, j)] = column_value(st.st, j);
      rows.push_back(std::move(row));
    }
    return rows;
  };
  if (delay_ms > 0) {
    const std::vector<std::int64_t> delay{delay_ms};
    execute("SELECT sleep_ms(?1)", delay);
  }
  return execute(sql.c_str(), params);
}

spindle::task<nlohmann::json> sqlite_store::query(std::string sql, std::vector<std::int64_t> params,
                                                  int delay_ms) {
  // By value: a job abandoned after its grace may outlive this frame. The
  // closure is named, not a temporary inside the co_await: g++ 12
  // miscompiles temporaries with std::string members there (DEVELOPERS.md).
  auto job = [this, sql = std::move(sql), params = std::move(params), delay_ms](std::stop_token stop) {
    return run(std::move(stop), sql, params, delay_ms);
  };
  co_return co_await spindle::run_blocking(*pool_, spindle::job_name{"sqlite.query"}, std::move(job));
}

}  // namespace aggregator
