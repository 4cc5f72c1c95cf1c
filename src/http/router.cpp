// http::router: method and path dispatch with 404 / 405 + Allow / 501.

#include "spindle/http/router.hpp"

#include <algorithm>

#include "spindle/error.hpp"

namespace spindle::http {

router::router() : routes_(std::make_shared<std::vector<route>>()) {}

router& router::add(std::string method, std::string pattern, handler h) {
  if (method.empty()) throw usage_error("router::add: empty method");
  if (!pattern.starts_with('/'))
    throw usage_error("router::add: the pattern must start with '/': " + pattern);
  route r{std::move(method), std::move(pattern), false, std::move(h)};
  if (r.pattern.ends_with("/*")) {
    r.pattern.pop_back();  // keep the '/': the prefix ends at a segment boundary
    r.prefix = true;
  }
  routes_->push_back(std::move(r));
  return *this;
}

bool router::matches(const route& r, std::string_view path) const noexcept {
  if (!r.prefix) return path == r.pattern;
  // "/files/" matches "/files/..." and "/files" itself.
  return path.starts_with(r.pattern) || path == std::string_view(r.pattern).substr(0, r.pattern.size() - 1);
}

namespace {
response plain_answer(int status, std::string_view text) {
  response r;
  r.status = status;
  r.headers.set("Content-Type", "text/plain");
  r.body = std::string(text) + "\n";
  return r;
}
}  // namespace

task<response> router::operator()(request& req) const {
  // (Held: the routes outlive a router copied away meanwhile.)
  const std::shared_ptr<std::vector<route>> routes = routes_;
  const std::string_view target = req.target;
  const std::string_view path = target.substr(0, target.find('?'));
  const route* get_route = nullptr;
  bool method_known = false;
  std::vector<std::string_view> allowed;
  for (const route& r : *routes) {
    const bool same_method = r.method == req.method;
    method_known = method_known || same_method || (req.method == "HEAD" && r.method == "GET");
    if (!matches(r, path)) continue;
    if (same_method) co_return co_await r.h(req);
    if (r.method == "GET" && get_route == nullptr) get_route = &r;
    if (std::find(allowed.begin(), allowed.end(), r.method) == allowed.end()) allowed.push_back(r.method);
  }
  if (req.method == "HEAD" && get_route != nullptr) co_return co_await get_route->h(req);
  if (!method_known) co_return plain_answer(501, "method not implemented");
  if (allowed.empty()) co_return plain_answer(404, "not found");
  if (get_route != nullptr && std::find(allowed.begin(), allowed.end(), "HEAD") == allowed.end())
    allowed.push_back("HEAD");
  std::string allow;
  for (std::string_view m : allowed) {
    if (!allow.empty()) allow += ", ";
    allow += m;
  }
  response r = plain_answer(405, "method not allowed");
  r.headers.set("Allow", allow);
  co_return r;
}

}  // namespace spindle::http
