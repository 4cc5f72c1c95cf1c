#include "mock_api.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>

#include "spindle/http/background_server.hpp"
#include "spindle/sleep.hpp"

namespace spindle::cli {

namespace {

// The value of `name` in a query string, or "".
std::string_view query_param(std::string_view target, std::string_view name) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name)
      return eq == std::string_view::npos ? std::string_view("1") : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return {};
}

long number(std::string_view s, long fallback) {
  long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc{} && end == s.data() + s.size() ? v : fallback;
}

}  // namespace

struct mock_api::impl {
  std::atomic<std::uint64_t> requests{0};
  std::set<long> flaky_seen;  // the server's loop thread only
  // Last: stopped (destroyed) first, before what its handler uses.
  std::optional<http::background_server> server;

  task<http::response> handle(http::request& req) {
    requests.fetch_add(1, std::memory_order_relaxed);
    http::response r;
    r.status = 200;
    const std::string_view target = req.target;
    const std::string_view path = target.substr(0, target.find('?'));
    if (path == "/") {
      r.body = "hello";
      co_return r;
    }
    if (!path.starts_with("/items/")) {
      r.status = 404;
      r.body = "not found";
      co_return r;
    }
    const long id = number(path.substr(7), -1);
    if (id < 0) {
      r.status = 400;
      r.body = "bad id";
      co_return r;
    }
    const long delay = std::clamp(number(query_param(target, "delay_ms"), 0), 0L, 60'000L);
    if (!query_param(target, "hang").empty()) {
      co_await sleep_for(std::chrono::seconds(60));
    } else if (delay > 0) {
      co_await sleep_for(std::chrono::milliseconds(delay));
    }
    long fail = number(query_param(target, "fail"), 0);
    if (!query_param(target, "flaky").empty() && flaky_seen.insert(id).second) fail = 503;
    if (fail >= 400 && fail <= 599) {
      r.status = static_cast<int>(fail);
      if (fail == 429 || fail == 503) r.headers.add("Retry-After", "0");
      r.body = "{\"error\":\"status " + std::to_string(fail) + "\"}";
    } else if (!query_param(target, "binary").empty()) {
      for (int b = 0; b < 256; ++b) r.body += static_cast<char>(b);
      r.headers.add("Content-Type", "application/octet-stream");
      co_return r;
    } else {
      r.body = "{\"id\":" + std::to_string(id) + ",\"name\":\"item " + std::to_string(id) + "\"}";
    }
    r.headers.add("Content-Type", "application/json");
    co_return r;
  }
};

mock_api::mock_api(std::uint16_t port) : impl_(std::make_unique<impl>()) {
  impl* self = impl_.get();
  http::background_server_options o;
  o.name = "mock-api";
  o.server.max_connections = 100'000;
  o.server.shutdown_grace = std::chrono::milliseconds(200);  // a hanging answer is not waited for
  o.address = net::socket_address::loopback_v4(port);
  self->server.emplace([self](http::request& r) { return self->handle(r); }, o);
}

mock_api::~mock_api() = default;

std::uint16_t mock_api::port() const noexcept { return impl_->server->port(); }
std::string mock_api::base_url() const { return impl_->server->base_url(); }
std::uint64_t mock_api::requests() const noexcept { return impl_->requests.load(std::memory_order_relaxed); }

}  // namespace spindle::cli
