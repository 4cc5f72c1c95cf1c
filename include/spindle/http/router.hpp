#pragma once
/// \file
/// http::router: a handler that dispatches on method and path, with the
/// answers RFC 9110 asks for when nothing matches.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "spindle/http/server.hpp"

namespace spindle::http {

/// Routes a request to the handler registered for its method and path.
/// A path is matched exactly, or, when the pattern ends in "/*", as a
/// prefix at a segment boundary ("/files/*" matches "/files/a/b", not
/// "/filesx"); the query string is not part of the path. HEAD is served by
/// the GET route when it has none of its own (the server sends the head
/// only). When nothing matches:
///
/// - 501 Not Implemented: no route takes the method at all (RFC 9110 §9.1:
///   an unrecognised or unimplemented method);
/// - 405 Method Not Allowed, with Allow listing the path's methods: the
///   path has routes, none for this method (§15.5.6);
/// - 404 Not Found otherwise.
///
///     http::router r;
///     r.add("GET", "/items/*", get_item).add("POST", "/items", create_item);
///     http::server srv(r);
///
/// **Thread safety:** add() before serving; afterwards a router (and its
/// copies, which share the routes) is read-only and safe on any thread.
class router {
 public:
  router();
  /// Adds a route (`method` case-sensitive, as RFC 9110 §9.1 says). Throws
  /// usage_error for an empty method or a pattern not starting with '/'.
  router& add(std::string method, std::string pattern, handler h);
  /// Dispatches `req`.
  task<response> operator()(request& req) const;

 private:
  struct route {
    std::string method;
    std::string pattern;  // without the trailing '*' of a prefix
    bool prefix = false;
    handler h;
  };
  [[nodiscard]] bool matches(const route& r, std::string_view path) const noexcept;
  std::shared_ptr<std::vector<route>> routes_;
};

}  // namespace spindle::http
