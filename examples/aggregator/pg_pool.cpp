#include "pg_pool.hpp"

#include <poll.h>

#include <array>
#include <cstdlib>
#include <stdexcept>
#include <utility>

#include "spindle/cancel_scope.hpp"
#include "spindle/event_loop.hpp"

namespace aggregator {

using spindle::task;

/// Counters shared by the pool and its connections (a connection may
/// outlive the pool's last query: the cleanup task holds it).
struct pg_pool::counters {
  std::size_t open = 0;
  std::size_t cancelling = 0;
  std::uint64_t created = 0;
  std::uint64_t reused = 0;
  std::uint64_t connect_failures = 0;
  std::uint64_t queries = 0;
  std::uint64_t query_errors = 0;
  std::uint64_t interrupted = 0;
  std::uint64_t cancels_sent = 0;
  std::uint64_t recycled = 0;
  std::uint64_t discarded = 0;
};

/// One libpq connection and its registration with the loop's reactor.
struct pg_pool::conn {
  explicit conn(std::shared_ptr<counters> c) : stats(std::move(c)) {}
  ~conn() {
    // The reactor registration goes first: async_fd must not outlive the
    // descriptor it watches, and PQfinish closes it.
    fd.reset();
    if (pg != nullptr) PQfinish(pg);
    if (counted) --stats->open;
  }
  conn(const conn&) = delete;
  conn& operator=(const conn&) = delete;

  /// Watches PQsocket(pg); remade if libpq moved to another socket (it
  /// does while connecting when it tries another address).
  void watch() {
    const int s = PQsocket(pg);
    if (fd == nullptr || fd->fd() != s) {
      fd.reset();
      fd = std::make_unique<spindle::async_fd>(*spindle::event_loop::current(), s);
    }
  }
  /// True when the connection can take a new query: connected, outside any
  /// transaction, with no query on it and nothing unread on the socket (an
  /// idle connection that became readable was closed by the server, e.g.
  /// "terminating connection due to administrator command").
  [[nodiscard]] bool clean() const {
    if (pg == nullptr || in_flight || PQstatus(pg) != CONNECTION_OK ||
        PQtransactionStatus(pg) != PQTRANS_IDLE)
      return false;
    pollfd p{PQsocket(pg), POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;
  }

  PGconn* pg = nullptr;
  std::unique_ptr<spindle::async_fd> fd;
  std::shared_ptr<counters> stats;
  bool counted = false;    // included in stats->open
  bool in_flight = false;  // a query was sent and its last result not yet read
};

struct pg_pool::lease {
  spindle::semaphore_permit permit;
  std::unique_ptr<conn> c;
};

namespace {

/// Waits until the connection's socket is readable (or writable).
///
/// async_fd is edge-triggered and completes a wait only for readiness that
/// arrived since the previous wait; libpq does not promise to read until
/// EAGAIN, so data (or an EOF that came with the last data) may already be
/// waiting. A zero-timeout poll() first makes this level-triggered: it
/// costs one syscall per wait and can never sleep on data already there.
task<void> wait_io(pg_pool::conn& c, bool write) {
  pollfd p{c.fd->fd(), static_cast<short>(write ? POLLOUT : POLLIN), 0};
  if (::poll(&p, 1, 0) > 0) co_return;
  if (write) {
    co_await c.fd->wait_writable();
  } else {
    co_await c.fd->wait_readable();
  }
}

std::string trimmed(const char* message) {
  std::string s = message != nullptr ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

nlohmann::json field_value(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return nullptr;
  const char* v = PQgetvalue(r, row, col);
  switch (PQftype(r, col)) {  // type OIDs from pg_type.h (stable)
    case 16:                  // bool
      return v[0] == 't';
    case 20:  // int8
    case 21:  // int2
    case 23:  // int4
      return std::strtoll(v, nullptr, 10);
    case 700:   // float4
    case 701:   // float8
    case 1700:  // numeric
      return std::strtod(v, nullptr);
    default: return v;
  }
}

nlohmann::json rows_of(const PGresult* r) {
  nlohmann::json rows = nlohmann::json::array();
  const int n = PQntuples(r);
  const int cols = PQnfields(r);
  for (int i = 0; i < n; ++i) {
    nlohmann::json row = nlohmann::json::object();
    for (int j = 0; j < cols; ++j) row[PQfname(r, j)] = field_value(r, i, j);
    rows.push_back(std::move(row));
  }
  return rows;
}

/// Sends the query and reads every result; the connection is left idle
/// (in_flight false) unless this throws while the query is on the server.
task<nlohmann::json> run_query(pg_pool::conn& c, const std::string& sql,
                               const std::vector<std::string>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.c_str());
  if (PQsendQueryParams(c.pg, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                        nullptr, 0) == 0)
    throw pg_connection_lost_error(trimmed(PQerrorMessage(c.pg)));
  c.in_flight = true;
  for (;;) {
    const int r = PQflush(c.pg);
    if (r == 0) break;
    if (r < 0) throw pg_connection_lost_error(trimmed(PQerrorMessage(c.pg)));
    co_await wait_io(c, true);
  }
  nlohmann::json rows;
  std::string error_state, error_message;
  for (;;) {
    while (PQisBusy(c.pg) != 0) {
      co_await wait_io(c, false);
      if (PQconsumeInput(c.pg) == 0) throw pg_connection_lost_error(trimmed(PQerrorMessage(c.pg)));
    }
    std::unique_ptr<PGresult, decltype(&PQclear)> res(PQgetResult(c.pg), &PQclear);
    if (res == nullptr) break;
    const ExecStatusType st = PQresultStatus(res.get());
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
      rows = rows_of(res.get());
    } else if (error_message.empty()) {
      const char* state = PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
      error_state = state != nullptr ? state : "";
      error_message = trimmed(PQresultErrorMessage(res.get()));
      if (error_message.empty()) error_message = PQresStatus(st);
    }
  }
  c.in_flight = false;
  if (PQstatus(c.pg) != CONNECTION_OK) throw pg_connection_lost_error(trimmed(PQerrorMessage(c.pg)));
  if (!error_message.empty()) throw pg_error(error_state, error_message);
  co_return rows;
}

}  // namespace

std::shared_ptr<pg_pool> pg_pool::create(pg_pool_options opts) {
  if (opts.cancel_pool == nullptr) throw spindle::usage_error("pg_pool: options.cancel_pool is required");
  if (spindle::event_loop::current() == nullptr)
    throw spindle::usage_error("pg_pool::create must run on the loop's thread");
  return std::shared_ptr<pg_pool>(new pg_pool(std::move(opts)));
}

pg_pool::pg_pool(pg_pool_options opts)
    : opts_(std::move(opts)),
      counters_(std::make_shared<counters>()),
      permits_(opts_.max_connections, opts_.name) {}

pg_pool::~pg_pool() = default;

task<std::unique_ptr<pg_pool::conn>> pg_pool::connect() {
  auto c = std::make_unique<conn>(counters_);
  c->pg = PQconnectStart(opts_.conninfo.c_str());
  if (c->pg == nullptr) throw std::bad_alloc();
  if (PQstatus(c->pg) == CONNECTION_BAD) throw pg_connect_error(trimmed(PQerrorMessage(c->pg)));
  // As libpq's documentation says: behave as if the last poll said WRITING.
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  for (;;) {
    c->watch();
    co_await wait_io(*c, st == PGRES_POLLING_WRITING);
    st = PQconnectPoll(c->pg);
    if (st == PGRES_POLLING_OK) break;
    if (st == PGRES_POLLING_FAILED) throw pg_connect_error(trimmed(PQerrorMessage(c->pg)));
  }
  c->watch();
  if (PQsetnonblocking(c->pg, 1) != 0) throw pg_connect_error(trimmed(PQerrorMessage(c->pg)));
  c->counted = true;
  ++counters_->open;
  ++counters_->created;
  co_return c;
}

task<pg_pool::lease> pg_pool::acquire() {
  if (closed_) throw spindle::shutdown_error("pg_pool '" + opts_.name + "' is shut down");
  spindle::semaphore_permit permit = co_await permits_.acquire_permit();
  lease l;
  l.permit = std::move(permit);
  while (!idle_.empty()) {
    std::unique_ptr<conn> c = std::move(idle_.back());
    idle_.pop_back();
    if (c->clean()) {
      ++counters_->reused;
      l.c = std::move(c);
      co_return l;
    }
    ++counters_->discarded;  // closed by the server while idle
  }
  try {
    l.c = co_await spindle::with_timeout(opts_.connect_timeout, connect());
  } catch (const spindle::cancelled_error&) {
    throw;  // the caller's cancellation, not a failure of the server
  } catch (...) {
    ++counters_->connect_failures;
    throw;
  }
  co_return l;
}

void pg_pool::release(lease l) noexcept {
  if (closed_ || !l.c->clean()) {
    ++counters_->discarded;
    return;  // the lease's destructor closes the connection and frees the permit
  }
  idle_.push_back(std::move(l.c));
}

task<nlohmann::json> pg_pool::query(std::string sql, std::vector<std::string> params) {
  lease l = co_await acquire();
  ++counters_->queries;
  std::exception_ptr failure;
  nlohmann::json rows;
  try {
    rows = co_await run_query(*l.c, sql, params);
  } catch (const pg_error&) {
    ++counters_->query_errors;
    failure = std::current_exception();
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure != nullptr && l.c->in_flight && PQstatus(l.c->pg) == CONNECTION_OK) {
    // Interrupted while the query runs on the server: cancel it there, off
    // this task (which must report its own cancellation now). The cleanup
    // task keeps the permit, so the pool's bound counts this connection.
    ++counters_->interrupted;
    // Spawned from a callback, not from here: a task spawned by this task
    // would inherit its deadline, which has passed (the task would be
    // cancelled before it started, leaving the query running).
    spindle::event_loop* loop = spindle::event_loop::current();
    loop->call_soon([loop, self = shared_from_this(), l = std::move(l)]() mutable {
      loop->spawn_detached(self->cancel_and_recycle(self, std::move(l)), "pg.cancel");
    });
  } else {
    release(std::move(l));
  }
  if (failure != nullptr) std::rethrow_exception(failure);
  co_return rows;
}

task<void> pg_pool::cancel_and_recycle(std::shared_ptr<pg_pool> self, lease l) {
  // Runs as its own task; `self` keeps the pool (and its semaphore, which
  // the permit refers to) alive until the cleanup ends.
  (void)self;
  ++counters_->cancelling;
  bool clean = false;
  try {
    // Shielded: the cleanup has its own bound, whatever scope it runs in.
    clean = co_await spindle::shielded(spindle::with_timeout(opts_.cancel_grace, cancel_and_drain(*l.c)));
  } catch (...) {
    clean = false;
  }
  --counters_->cancelling;
  if (clean) ++counters_->recycled;
  release(std::move(l));
}

task<bool> pg_pool::cancel_and_drain(conn& c) {
  std::shared_ptr<PGcancel> cancel(PQgetCancel(c.pg), &PQfreeCancel);
  if (cancel == nullptr) co_return false;
  // PQcancel opens a connection to the server and waits for it to close:
  // blocking, so it runs on the cancel pool. The job owns its PGcancel (the
  // shared_ptr copy), so an abandoned job cannot outlive it.
  auto send_cancel = [cancel] {
    std::array<char, 256> err{};
    return PQcancel(cancel.get(), err.data(), static_cast<int>(err.size())) == 1;
  };
  const bool sent = co_await spindle::run_blocking(*opts_.cancel_pool, spindle::job_name{"pg.cancel"},
                                                   std::move(send_cancel));
  if (sent) ++counters_->cancels_sent;
  // Drain: the query ends with 57014 "canceling statement due to user
  // request" (or its real result, if it finished first).
  while (PQstatus(c.pg) == CONNECTION_OK) {
    while (PQisBusy(c.pg) != 0) {
      co_await wait_io(c, false);
      if (PQconsumeInput(c.pg) == 0) co_return false;
    }
    std::unique_ptr<PGresult, decltype(&PQclear)> res(PQgetResult(c.pg), &PQclear);
    if (res == nullptr) {
      c.in_flight = false;
      break;
    }
  }
  co_return c.clean();
}

void pg_pool::close_idle() noexcept { idle_.clear(); }

void pg_pool::shutdown() noexcept {
  closed_ = true;
  idle_.clear();
}

pg_pool_statistics pg_pool::statistics() const {
  const auto ps = permits_.statistics();
  pg_pool_statistics s;
  s.name = opts_.name;
  s.max_connections = opts_.max_connections;
  s.open = counters_->open;
  s.idle = idle_.size();
  s.cancelling = counters_->cancelling;
  s.waiting = ps.waiting;
  s.created = counters_->created;
  s.reused = counters_->reused;
  s.connect_failures = counters_->connect_failures;
  s.queries = counters_->queries;
  s.query_errors = counters_->query_errors;
  s.interrupted = counters_->interrupted;
  s.cancels_sent = counters_->cancels_sent;
  s.recycled = counters_->recycled;
  s.discarded = counters_->discarded;
  return s;
}

void add_metrics(spindle::prometheus_exposition& e, const pg_pool_statistics& s) {
  using spindle::metric_type;
  const spindle::prometheus_exposition::labels l{{"pool", s.name}};
  auto gauge = [&](const char* name, const char* help, double v) {
    e.add_sample(name, metric_type::gauge, help, l, v);
  };
  auto counter = [&](const char* name, const char* help, double v) {
    e.add_sample(name, metric_type::counter, help, l, v);
  };
  gauge("aggregator_pg_connections_max", "Connections the pool may open.", double(s.max_connections));
  gauge("aggregator_pg_connections_open", "Connections open now.", double(s.open));
  gauge("aggregator_pg_connections_idle", "Open connections idle in the pool.", double(s.idle));
  gauge("aggregator_pg_connections_cancelling", "Connections being cleaned up after a cancelled query.",
        double(s.cancelling));
  gauge("aggregator_pg_waiting", "Queries waiting for a connection.", double(s.waiting));
  counter("aggregator_pg_connections_created_total", "Connections made.", double(s.created));
  counter("aggregator_pg_connections_reused_total", "Queries sent on a pooled connection.", double(s.reused));
  counter("aggregator_pg_connect_failures_total", "Connection attempts that failed.",
          double(s.connect_failures));
  counter("aggregator_pg_queries_total", "Queries started.", double(s.queries));
  counter("aggregator_pg_query_errors_total", "Queries the server answered with an error.",
          double(s.query_errors));
  counter("aggregator_pg_interrupted_total", "Queries cancelled while running on the server.",
          double(s.interrupted));
  counter("aggregator_pg_cancels_sent_total", "Cancel requests the server accepted.", double(s.cancels_sent));
  counter("aggregator_pg_recycled_total", "Connections clean after a cancel, returned to the pool.",
          double(s.recycled));
  counter("aggregator_pg_discarded_total", "Connections closed because broken or dirty.",
          double(s.discarded));
}

}  // namespace aggregator
