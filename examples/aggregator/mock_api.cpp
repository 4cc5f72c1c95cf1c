#include "mock_api.hpp"

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

#include "spindle/join_handle.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/sleep.hpp"
#include "target.hpp"

namespace aggregator {

using spindle::task;
namespace http = spindle::http;

namespace {

nlohmann::json document(const std::string& kind, long long id) {
  // Strings built with append, not `"W" + std::to_string(n)`: g++ 12 at -O3
  // reports a false -Wrestrict inside operator+ (an error with -Werror).
  std::string text = kind == "items" ? "item " : "W";
  text.append(std::to_string(kind == "items" ? id : id % 4));
  if (kind == "items") return {{"id", id}, {"title", text}, {"category", id % 5}};
  if (kind == "reviews")
    return {{"id", id}, {"count", id % 40}, {"stars", 1.0 + static_cast<double>(id % 40) / 10.0}};
  if (kind == "pricing") return {{"id", id}, {"cents", 199 + (id * 13) % 5000}, {"currency", "EUR"}};
  return {{"id", id}, {"in_stock", id % 3 != 0}, {"warehouse", text}};
}

http::response json_response(int status, const nlohmann::json& body) {
  http::response r;
  r.status = status;
  r.headers.add("Content-Type", "application/json");
  r.body = body.dump();
  return r;
}

// Error answers, built outside the coroutine (g++ 12 mishandles
// initializer lists in coroutine bodies, and nlohmann's object syntax is one).
http::response error_response(int status, const char* message) {
  return json_response(status, {{"error", message}});
}

task<http::response> handle(http::request& req) {
  // Copied before the first suspension (the request is the server's).
  const request_target t = parse_target(req.target);
  if (req.method != "GET" || t.segments.size() != 2 ||
      (t.segments[0] != "items" && t.segments[0] != "reviews" && t.segments[0] != "pricing" &&
       t.segments[0] != "stock"))
    co_return error_response(404, "not found");
  const auto id = parse_int(t.segments[1], 0, 1'000'000'000);
  const auto delay = t.int_param("delay_ms", 0, 0, 600'000);
  const auto status = t.int_param("status", 200, 200, 599);
  if (!id || !delay || !status) co_return error_response(400, "bad id, delay_ms or status");
  if (*delay > 0) co_await spindle::sleep_for(std::chrono::milliseconds(*delay));
  if (*status != 200) co_return error_response(static_cast<int>(*status), "as requested");
  co_return json_response(200, document(t.segments[0], *id));
}

}  // namespace

// Loop-side state: created, used and destroyed on the mock's loop.
struct mock_api::running {
  static http::server_options options() {
    http::server_options o;
    o.shutdown_grace = std::chrono::seconds(1);  // a delayed answer nobody waits for is not kept
    return o;
  }
  http::server server{handle, options()};
  std::optional<spindle::join_handle<void>> serving;
};

mock_api::mock_api() : loop_({.loop = {.name = "mock-api"}}) {
  running_ = std::make_shared<running>();
  const std::uint16_t port = loop_.portal().call_sync([r = running_] {
    auto listener = spindle::net::tcp_listener::bind(spindle::net::socket_address::loopback_v4(0));
    const std::uint16_t p = listener.local_address().port();
    r->serving.emplace(
        spindle::event_loop::current()->spawn(r->server.serve(std::move(listener)), "mock-api"));
    return p;
  });
  base_url_ = "http://127.0.0.1:" + std::to_string(port);
}

mock_api::~mock_api() { stop(); }

spindle::http::server_statistics mock_api::statistics() const {
  return loop_.portal().call_sync([r = running_] { return r->server.statistics(); });
}

void mock_api::stop() {
  if (stopped_) return;
  stopped_ = true;
  try {
    loop_.portal().call(
        [r = running_]() -> task<void> {
          r->server.stop();
          if (r->serving) co_await *r->serving;
          r->serving.reset();
        },
        std::chrono::seconds(10), "mock-api.stop");
  } catch (const spindle::error&) {
    // The loop's stop below cancels whatever is left.
  }
  loop_.portal().call_sync([r = running_]() mutable { r.reset(); });
  running_.reset();
  loop_.stop();
}

}  // namespace aggregator
