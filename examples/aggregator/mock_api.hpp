#pragma once
/// \file
/// mock_api: the aggregator's stand-in for remote HTTP APIs, served by
/// spindle::http::server on 127.0.0.1 (an ephemeral port) on a background
/// loop of its own, so it does not share the aggregator's loop.
///
///     GET /{items|reviews|pricing|stock}/{id}[?delay_ms=N][&status=S]
///
/// answers a small JSON document computed from the id, after N ms (a timer,
/// not a thread), with status S (default 200).

#include <cstdint>
#include <memory>
#include <string>

#include "spindle/http/background_server.hpp"

namespace aggregator {

/// **Thread safety:** construct, base_url() and stop() from any one thread
/// that is not the mock's loop (an http::background_server).
class mock_api {
 public:
  /// Starts serving at once.
  mock_api();
  /// stop().
  ~mock_api();
  mock_api(const mock_api&) = delete;
  mock_api& operator=(const mock_api&) = delete;

  /// "http://127.0.0.1:<port>".
  [[nodiscard]] const std::string& base_url() const noexcept { return base_url_; }
  [[nodiscard]] spindle::http::server_statistics statistics() const { return server_.statistics(); }
  /// Graceful stop of the server, then of its loop. Idempotent.
  void stop() { server_.stop(); }

 private:
  spindle::http::background_server server_;
  std::string base_url_;
};

}  // namespace aggregator
