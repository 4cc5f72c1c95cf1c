#include "mock_api.hpp"

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

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

namespace {
spindle::http::background_server_options options() {
  spindle::http::background_server_options o;
  o.name = "mock-api";
  o.server.shutdown_grace = std::chrono::seconds(1);  // a delayed answer nobody waits for is not kept
  return o;
}
}  // namespace

mock_api::mock_api() : server_(handle, options()), base_url_(server_.base_url()) {}

mock_api::~mock_api() { stop(); }

}  // namespace aggregator
