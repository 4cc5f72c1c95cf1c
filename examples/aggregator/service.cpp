#include "service.hpp"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <ranges>
#include <utility>
#include <vector>

#include "pg_pool.hpp"
#include "spindle/gather.hpp"
#include "spindle/http/client.hpp"
#include "spindle/http/fetch.hpp"
#include "spindle/http/metrics.hpp"
#include "spindle/prometheus.hpp"
#include "target.hpp"

namespace aggregator {

using spindle::task;
namespace http = spindle::http;
using json = nlohmann::json;

namespace {

enum class backend : std::uint8_t { postgresql, sqlite, http };

struct subquery {
  const char* name;
  backend source;
  const char* text;  // SQL, or the mock API's resource
};

// A one-time filter (an InitPlan evaluated once, before the scan) carries
// the optional delay, so it applies even when no row matches.
#define PG_DELAY "(SELECT 1 FROM pg_sleep($2::float8)) = 1"
constexpr std::array<subquery, 12> subqueries{{
    {"pg.user", backend::postgresql,
     "SELECT id, name, email, city FROM users WHERE " PG_DELAY " AND id = $1::int"},
    {"pg.orders", backend::postgresql,
     "SELECT id, amount_cents, placed_on::text AS placed_on FROM orders WHERE " PG_DELAY
     " AND user_id = $1::int ORDER BY placed_on DESC, id DESC LIMIT 5"},
    {"pg.following", backend::postgresql,
     "SELECT followee FROM follows WHERE " PG_DELAY " AND follower = $1::int ORDER BY followee"},
    {"pg.spend", backend::postgresql,
     "SELECT count(*) AS orders, coalesce(sum(amount_cents), 0) AS total_cents FROM orders WHERE " PG_DELAY
     " AND user_id = $1::int"},
    {"sqlite.prefs", backend::sqlite, "SELECT key, value FROM prefs WHERE user_id = ?1 ORDER BY key"},
    {"sqlite.tags", backend::sqlite, "SELECT tag FROM tags WHERE user_id = ?1 ORDER BY tag"},
    {"sqlite.views", backend::sqlite,
     "SELECT count(*) AS views, max(seen_at) AS last_seen FROM views WHERE user_id = ?1"},
    {"sqlite.score", backend::sqlite, "SELECT score, tier FROM scores WHERE user_id = ?1"},
    {"http.items", backend::http, "items"},
    {"http.reviews", backend::http, "reviews"},
    {"http.pricing", backend::http, "pricing"},
    {"http.stock", backend::http, "stock"},
}};
#undef PG_DELAY

const char* backend_name(backend b) {
  switch (b) {
    case backend::postgresql: return "postgresql";
    case backend::sqlite: return "sqlite";
    default: return "http";
  }
}

/// One /graph request's parameters. Trivially copyable on purpose: it is
/// passed into coroutines (see DEVELOPERS.md on g++ 12).
struct graph_request {
  int id = 0;
  bool sequential = false;
  int pg_delay_ms = 0;
  int sqlite_delay_ms = 0;
  int http_delay_ms = 0;
  std::chrono::milliseconds timeout{1000};
};

/// The HTTP backend's answer was not JSON.
SPINDLE_DEFINE_ERROR(bad_payload_error, protocol);

}  // namespace

/// Loop-side state: made, used and destroyed on the loop's thread.
struct service::backends {
  std::shared_ptr<pg_pool> pg;
  std::unique_ptr<http::client> api;
  sqlite_store* sqlite = nullptr;
  std::string api_base_url;
  // Sub-query outcomes: {backend, "ok" or the error kind} → count.
  std::map<std::pair<std::string, std::string>, std::uint64_t> outcomes;
  std::uint64_t graphs_fan_out = 0;
  std::uint64_t graphs_sequential = 0;
};

namespace {

/// Records a sub-query's duration when it ends, however it ends.
struct stopwatch {
  double& out;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  ~stopwatch() {
    out = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }
};

task<json> run_subquery(service::backends& b, graph_request r, std::size_t i, double& elapsed_ms) {
  stopwatch watch{elapsed_ms};
  const subquery& q = subqueries[i];
  switch (q.source) {
    case backend::postgresql: {
      std::string sql = q.text;
      std::vector<std::string> params;
      params.push_back(std::to_string(r.id));
      params.push_back(std::to_string(r.pg_delay_ms / 1000.0));
      co_return co_await b.pg->query(std::move(sql), std::move(params));
    }
    case backend::sqlite: {
      std::string sql = q.text;
      std::vector<std::int64_t> params;
      params.push_back(r.id);
      co_return co_await b.sqlite->query(std::move(sql), std::move(params), r.sqlite_delay_ms);
    }
    case backend::http: break;  // (the HTTP sub-queries go through the fetch engine: fetch_http)
  }
  throw std::logic_error("unknown backend");
}

/// The one document (a plain function: g++ 12 mishandles initializer
/// lists in coroutine bodies, and nlohmann's object syntax is one).
json merge(service::backends& b, const graph_request& r, std::vector<spindle::outcome<json>>& outcomes,
           const std::vector<double>& elapsed, std::chrono::steady_clock::time_point started) {
  json results = json::object();
  int ok = 0;
  for (std::size_t i = 0; i < subqueries.size(); ++i) {
    const subquery& q = subqueries[i];
    json item{{"backend", backend_name(q.source)}, {"ok", outcomes[i].ok()}, {"elapsed_ms", elapsed[i]}};
    if (outcomes[i].ok()) {
      ++ok;
      item["data"] = std::move(outcomes[i].value());
    } else {
      item["error"] = {{"kind", outcomes[i].error_kind()}, {"message", outcomes[i].error_message()}};
    }
    ++b.outcomes[{backend_name(q.source), outcomes[i].ok() ? "ok" : outcomes[i].error_kind()}];
    results[q.name] = std::move(item);
  }
  ++(r.sequential ? b.graphs_sequential : b.graphs_fan_out);
  const int count = static_cast<int>(subqueries.size());
  return json{
      {"id", r.id},
      {"mode", r.sequential ? "sequential" : "fan_out"},
      {"subquery_timeout_ms", r.timeout.count()},
      {"elapsed_ms",
       std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count()},
      {"complete", ok == count},
      {"ok", ok},
      {"failed", count - ok},
      {"results", std::move(results)},
  };
}

/// A failed fetch result as an error of its kind (for the outcome).
class fetch_failure : public spindle::error {
 public:
  fetch_failure(std::string kind, std::string message)
      : error(std::move(message)),
        kind_(std::move(kind)),
        id_(spindle::error_kind_from_name(kind_).value_or(spindle::error_kind::application)) {}
  [[nodiscard]] spindle::error_kind kind_id() const noexcept override { return id_; }
  [[nodiscard]] const char* kind() const noexcept override { return kind_.c_str(); }

 private:
  std::string kind_;
  spindle::error_kind id_;
};

/// The sub-queries of one /graph request, as they end.
struct graph_parts {
  std::vector<std::size_t> db;    // the indices of the database sub-queries
  std::vector<std::size_t> http;  // those of the HTTP ones
  std::vector<spindle::outcome<json>> db_outcomes;
  std::vector<http::fetch_result> fetched;
};

/// The HTTP sub-queries: one run of the library's fetch engine over the
/// shared client (its per-origin pool), each bounded by the sub-query
/// timeout. No retries: the timeout is the sub-query's whole budget.
task<void> fetch_http(service::backends& b, graph_request r, graph_parts& parts) {
  std::vector<std::string> urls;
  for (std::size_t i : parts.http)
    urls.push_back(b.api_base_url + "/" + subqueries[i].text + "/" + std::to_string(r.id) +
                   "?delay_ms=" + std::to_string(r.http_delay_ms));
  http::fetch_options fo;
  fo.concurrency = r.sequential ? 1 : urls.size();  // one at a time: the sum of the latencies
  fo.timeout = r.timeout;
  fo.retries = 0;
  fo.keep_body = true;
  parts.fetched = co_await http::fetch_all(*b.api, std::move(urls), fo);
}

task<void> run_databases(service::backends& b, graph_request r, graph_parts& parts,
                         std::vector<double>& elapsed) {
  auto make = [&b, &elapsed, r](std::size_t i) { return run_subquery(b, r, i, elapsed[i]); };
  spindle::fanout_options opts;
  opts.per_item_timeout = r.timeout;
  opts.limit = r.sequential ? 1 : 0;
  parts.db_outcomes = co_await spindle::gather_settled(parts.db, make, opts);
}

/// An HTTP sub-query's outcome: the API's JSON, or the result's typed error.
spindle::outcome<json> outcome_of(http::fetch_result& f) {
  if (!f.ok) return std::make_exception_ptr(fetch_failure(f.error_kind, f.error_message));
  json doc = json::parse(f.body, nullptr, false);
  if (doc.is_discarded())
    return std::make_exception_ptr(bad_payload_error("the API answered something that is not JSON"));
  return doc;
}

/// One /graph request, on the loop: every sub-query ends in an outcome.
/// The database sub-queries and the HTTP ones run side by side (one after
/// the other, each one at a time, in sequential mode).
task<json> fan_out(std::shared_ptr<service::backends> b, graph_request r) {
  const auto started = std::chrono::steady_clock::now();
  std::vector<double> elapsed(subqueries.size(), 0.0);
  graph_parts parts;
  for (std::size_t i = 0; i < subqueries.size(); ++i)
    (subqueries[i].source == backend::http ? parts.http : parts.db).push_back(i);
  auto part = [&b, &parts, &elapsed, r](int which) {
    return which == 0 ? run_databases(*b, r, parts, elapsed) : fetch_http(*b, r, parts);
  };
  spindle::fanout_options po;
  po.limit = r.sequential ? 1 : 0;
  auto ended = co_await spindle::gather_settled(std::views::iota(0, 2), part, po);

  std::vector<spindle::outcome<json>> outcomes;
  outcomes.reserve(subqueries.size());
  std::size_t next_db = 0, next_http = 0;
  for (std::size_t i = 0; i < subqueries.size(); ++i) {
    if (subqueries[i].source != backend::http) {
      if (next_db < parts.db_outcomes.size()) {
        outcomes.push_back(std::move(parts.db_outcomes[next_db++]));
      } else {
        outcomes.emplace_back(ended[0].error());  // (the part itself failed)
      }
    } else if (next_http < parts.fetched.size()) {
      http::fetch_result& f = parts.fetched[next_http++];
      elapsed[i] = f.elapsed_ms;
      outcomes.push_back(outcome_of(f));
    } else {
      outcomes.emplace_back(ended[1].error());
    }
  }
  co_return merge(*b, r, outcomes, elapsed, started);
}

http::response json_response(int status, const json& body) {
  http::response r;
  r.status = status;
  r.headers.add("Content-Type", "application/json");
  r.body = body.dump();
  r.body += '\n';
  return r;
}

http::response error_response(int status, const std::string& kind, const std::string& message) {
  return json_response(status, {{"error", {{"kind", kind}, {"message", message}}}});
}

std::string make_temp_dir() {
  std::string templ = (std::filesystem::temp_directory_path() / "spindle-aggregator.XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return templ;
}

spindle::thread_pool_options pool_options(std::string name, std::size_t threads, spindle::event_loop& loop) {
  spindle::thread_pool_options o;
  o.name = std::move(name);
  o.threads = threads;
  o.queue_capacity = 1024;
  o.full = spindle::when_full::wait;
  o.abandon_grace = std::chrono::seconds(2);
  o.attach_to = &loop;
  return o;
}

}  // namespace

service::service(service_options opts)
    : opts_(std::move(opts)),
      bg_({.loop = {.name = "aggregator"}}),
      front_([this](const http::request& req) { return handle(req); },
             front_options{.name = "front", .port = opts_.port, .workers = opts_.workers}) {
  try {
    if (opts_.api_base_url.empty()) {
      mock_ = std::make_unique<mock_api>();
      api_base_url_ = mock_->base_url();
    } else {
      api_base_url_ = opts_.api_base_url;
    }
    std::string sqlite_path = opts_.sqlite_path;
    if (!sqlite_path.empty() && !std::filesystem::exists(sqlite_path)) {
      sqlite_store::create_seeded(sqlite_path);
    } else if (sqlite_path.empty()) {
      temp_dir_ = make_temp_dir();
      sqlite_path = temp_dir_ + "/aggregator.db";
      sqlite_store::create_seeded(sqlite_path);
    }
    sqlite_pool_ =
        std::make_unique<spindle::thread_pool>(pool_options("sqlite", opts_.sqlite_threads, bg_.loop()));
    cancel_pool_ = std::make_unique<spindle::thread_pool>(pool_options("pg-cancel", 1, bg_.loop()));
    sqlite_ = std::make_unique<sqlite_store>(sqlite_path, *sqlite_pool_);
    backends_ = bg_.portal().call_sync([this] {
      auto b = std::make_shared<backends>();
      pg_pool_options po;
      po.conninfo = opts_.pg_conninfo;
      po.max_connections = opts_.pg_connections;
      po.cancel_pool = cancel_pool_.get();
      b->pg = pg_pool::create(std::move(po));
      http::client_options co;
      co.max_connections_per_origin = opts_.http_connections;
      co.connect_timeout = std::chrono::seconds(2);
      b->api = std::make_unique<http::client>(co);
      b->sqlite = sqlite_.get();
      b->api_base_url = api_base_url_;
      return b;
    });
    front_.start();
  } catch (...) {
    stop();
    throw;
  }
}

service::~service() { stop(); }

void service::stop() {
  std::lock_guard lock(stop_mutex_);
  if (stopped_) return;
  stopped_ = true;
  // 1. No new requests; those in flight finish (they hold front workers).
  front_.stop();
  // 2. The loop-side state goes on the loop's thread: idle connections
  // close now, connections still being cleaned up close when their
  // cleanup task ends (cancelled by the loop's shutdown below).
  if (backends_ != nullptr) {
    try {
      bg_.portal().call_sync([b = std::move(backends_)]() mutable {
        b->pg->shutdown();
        b.reset();
      });
    } catch (const spindle::error& e) {
      std::fprintf(stderr, "aggregator: stop: %s\n", e.what());
    }
  }
  // 3. The loop: cancels what is left and shuts down the attached pools.
  const spindle::loop_shutdown_report report = bg_.stop();
  if (!report.clean()) std::fprintf(stderr, "aggregator: loop shutdown: %s\n", report.to_string().c_str());
  sqlite_.reset();
  sqlite_pool_.reset();
  cancel_pool_.reset();
  if (mock_ != nullptr) mock_->stop();
  if (!temp_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(temp_dir_, ec);
  }
}

http::response service::handle(const http::request& req) {
  const request_target t = parse_target(req.target);
  if (req.method != "GET" && req.method != "HEAD") return error_response(405, "method", "only GET");
  if (t.segments.size() == 2 && t.segments[0] == "graph") return graph(t.segments[1], t);
  if (t.segments.size() == 1 && t.segments[0] == "metrics") {
    try {
      http::response r;
      r.status = 200;
      r.headers.add("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
      r.body = metrics();
      return r;
    } catch (const spindle::shutdown_error& e) {
      return error_response(503, e.kind(), e.what());
    }
  }
  if (t.segments.size() == 1 && t.segments[0] == "healthz") {
    http::response r;
    r.status = 200;
    r.body = "ok\n";
    return r;
  }
  return error_response(404, "not_found", "no route for " + req.target);
}

http::response service::graph(const std::string& id_text, const request_target& t) {
  graph_request r;
  const auto id = parse_int(id_text, 1, 2'147'483'647);
  const auto delay = t.int_param("delay_ms", 0, 0, 60'000);
  const auto timeout = t.int_param("timeout_ms", opts_.subquery_timeout.count(), 1, 600'000);
  if (!id || !delay || !timeout) return error_response(400, "bad_request", "bad id, delay_ms or timeout_ms");
  const auto pg_delay = t.int_param("pg_delay_ms", *delay, 0, 600'000);
  const auto sqlite_delay = t.int_param("sqlite_delay_ms", *delay, 0, 600'000);
  const auto http_delay = t.int_param("http_delay_ms", *delay, 0, 600'000);
  if (!pg_delay || !sqlite_delay || !http_delay) return error_response(400, "bad_request", "bad delay");
  const auto mode = t.query.find("mode");
  if (mode != t.query.end() && mode->second != "sequential" && mode->second != "fan_out")
    return error_response(400, "bad_request", "mode is sequential or fan_out");
  r.id = static_cast<int>(*id);
  r.sequential = mode != t.query.end() && mode->second == "sequential";
  r.pg_delay_ms = static_cast<int>(*pg_delay);
  r.sqlite_delay_ms = static_cast<int>(*sqlite_delay);
  r.http_delay_ms = static_cast<int>(*http_delay);
  r.timeout = std::chrono::milliseconds(*timeout);
  try {
    json doc =
        bg_.portal().call([b = backends_, r] { return fan_out(b, r); }, opts_.request_timeout, "graph");
    return json_response(200, doc);
  } catch (const spindle::error& e) {
    {
      std::lock_guard lock(errors_mutex_);
      ++portal_errors_[e.kind()];
    }
    const std::string kind = e.kind();
    const int status = kind == "timeout" ? 504 : kind == "shutdown" ? 503 : 500;
    return error_response(status, kind, e.what());
  }
}

std::map<std::string, std::uint64_t> service::portal_errors() const {
  std::lock_guard lock(errors_mutex_);
  return portal_errors_;
}

void service::close_idle_connections() {
  bg_.portal().call_sync([b = backends_] {
    b->pg->close_idle();
    b->api->close_idle();
  });
}

std::string service::metrics() {
  struct loop_side {
    pg_pool_statistics pg;
    http::client_statistics api;
    std::map<std::pair<std::string, std::string>, std::uint64_t> outcomes;
    std::uint64_t fan_out = 0;
    std::uint64_t sequential = 0;
  };
  // Snapshots of loop-owned state are taken on the loop.
  const loop_side s = bg_.portal().call_sync([b = backends_] {
    return loop_side{b->pg->statistics(), b->api->statistics(), b->outcomes, b->graphs_fan_out,
                     b->graphs_sequential};
  });
  spindle::prometheus_exposition m;
  m.add(bg_.statistics());
  m.add(bg_.portal().statistics(), bg_.portal().loop_name());
  m.add(sqlite_pool_->statistics());
  m.add(cancel_pool_->statistics());
  add_metrics(m, s.pg);
  http::add_metrics(m, s.api, "backend-api");
  add_metrics(m, front_.statistics(), "front");
  for (const auto& [key, n] : s.outcomes)
    m.add_sample("aggregator_subqueries_total", spindle::metric_type::counter,
                 "Sub-query outcomes by backend.", {{"backend", key.first}, {"outcome", key.second}},
                 double(n));
  m.add_sample("aggregator_graph_requests_total", spindle::metric_type::counter, "Completed /graph fan-outs.",
               {{"mode", "fan_out"}}, double(s.fan_out));
  m.add_sample("aggregator_graph_requests_total", spindle::metric_type::counter, "Completed /graph fan-outs.",
               {{"mode", "sequential"}}, double(s.sequential));
  for (const auto& [kind, n] : portal_errors())
    m.add_sample("aggregator_portal_errors_total", spindle::metric_type::counter,
                 "Portal calls that failed, by error kind.", {{"kind", kind}}, double(n));
  return m.str();
}

}  // namespace aggregator
