#pragma once
/// \file
/// http::background_server: an http::server on a loop and thread of its own,
/// for a threaded program or a test that needs an HTTP endpoint beside it
/// (a mock API, a metrics endpoint).

#include <cstdint>
#include <memory>
#include <string>

#include "spindle/background_loop.hpp"
#include "spindle/http/server.hpp"
#include "spindle/net/address.hpp"

namespace spindle::http {

struct background_server_options {
  std::string name = "http-server";  ///< the loop's, its thread's and the serving task's name
  server_options server{};
  /// Where to listen (port 0: any free port; port() tells which).
  net::socket_address address = net::socket_address::loopback_v4(0);
  /// stop(): how long the graceful stop may take before the loop cancels
  /// what is left (on top of server.shutdown_grace for requests in flight).
  duration stop_timeout = std::chrono::seconds(10);
};

/// Serves `handler` on its own background_loop from construction until
/// stop() or destruction. The handler runs on that loop's thread (state it
/// shares with other threads needs their synchronisation, or the portal).
///
/// **Thread safety:** every member may be called from any thread but the
/// server's own loop thread (they block on its portal).
class background_server {
 public:
  /// Binds (throws net errors, e.g. address in use) and starts serving.
  explicit background_server(handler h, background_server_options opts = {});
  /// stop().
  ~background_server();
  background_server(const background_server&) = delete;
  background_server& operator=(const background_server&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// "http://127.0.0.1:PORT" (the bound address).
  [[nodiscard]] std::string base_url() const;
  /// The server's statistics, read on its loop.
  [[nodiscard]] server_statistics statistics() const;
  /// Stops accepting, lets requests in flight finish (server_options::
  /// shutdown_grace, bounded by stop_timeout), then stops the loop and its
  /// thread. Idempotent.
  void stop() noexcept;
  /// The server's loop (its portal reaches it from other threads).
  [[nodiscard]] background_loop& loop() noexcept { return loop_; }

 private:
  struct state;
  background_loop loop_;
  std::shared_ptr<state> state_;  // made, used and destroyed on the loop's thread
  net::socket_address bound_;
  std::uint16_t port_ = 0;
  duration stop_timeout_;
  bool stopped_ = false;
};

}  // namespace spindle::http
