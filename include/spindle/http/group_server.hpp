#pragma once
/// \file
/// http::group_server: one http::server per loop of a loop_group, each with
/// its own listener on the same port (SO_REUSEPORT): thread-per-core
/// serving, the kernel spreading connections over the loops.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "spindle/http/server.hpp"
#include "spindle/loop_group.hpp"
#include "spindle/net/address.hpp"

namespace spindle::http {

struct group_server_options {
  std::string name = "http-server";  ///< each serving task's name
  server_options server{};           ///< for each loop's server (limits are per loop)
  /// Where to listen (port 0: any free port, the same on every loop).
  net::socket_address address = net::socket_address::loopback_v4(0);
  /// stop(): how long the graceful stop may take on each loop.
  duration stop_timeout = std::chrono::seconds(10);
};

/// Serves `handler` on every loop of `group` until stop(). The handler runs
/// on the loop that accepted the connection; state shared between loops
/// needs their synchronisation (or submit_to the loop that owns it).
///
/// **Thread safety:** construct, stop and read statistics from a thread
/// that runs no loop (they wait on the loops' portals).
class group_server {
 public:
  /// Binds on every loop (throws net errors) and starts serving.
  group_server(loop_group& group, handler h, group_server_options opts = {});
  /// stop().
  ~group_server();
  group_server(const group_server&) = delete;
  group_server& operator=(const group_server&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] std::string base_url() const;
  /// Each loop's server statistics, in loop order.
  [[nodiscard]] std::vector<server_statistics> statistics() const;
  /// Stops accepting on every loop, lets requests in flight finish
  /// (server_options::shutdown_grace), then ends the serving tasks. The
  /// group's loops keep running. Idempotent.
  void stop() noexcept;

 private:
  struct state;
  loop_group* group_;
  std::vector<std::shared_ptr<state>> states_;  // states_[i]: made, used and destroyed on loop i
  net::socket_address bound_;
  std::uint16_t port_ = 0;
  duration stop_timeout_;
  bool stopped_ = false;
};

}  // namespace spindle::http
