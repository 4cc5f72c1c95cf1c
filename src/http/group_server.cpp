#include "spindle/http/group_server.hpp"

#include <optional>
#include <utility>

#include "spindle/error.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/join_handle.hpp"
#include "spindle/net/tcp.hpp"

namespace spindle::http {

// One loop's part: made, used and destroyed on that loop's thread.
struct group_server::state {
  state(handler h, server_options so) : srv(std::move(h), so) {}
  server srv;
  std::optional<join_handle<void>> serving;
};

group_server::group_server(loop_group& group, handler h, group_server_options opts)
    : group_(&group), stop_timeout_(opts.stop_timeout) {
  net::socket_address address = opts.address;
  try {
    for (std::size_t i = 0; i < group.size(); ++i) {
      // Bound on the loop's own thread (the socket belongs to its reactor);
      // the first listener picks the port, the others share it.
      auto started = group.portal(i).call_sync([h, so = opts.server, address, name = opts.name]() mutable {
        auto st = std::make_shared<state>(std::move(h), so);
        net::listen_options lo;
        lo.reuse_port = true;
        net::tcp_listener listener = net::tcp_listener::bind(address, lo);
        const net::socket_address bound = listener.local_address();
        st->serving.emplace(event_loop::current()->spawn(st->srv.serve(std::move(listener)), name));
        return std::make_pair(st, bound);
      });
      states_.push_back(std::move(started.first));
      if (i == 0) {
        bound_ = started.second;
        port_ = bound_.port();
        address = bound_;
      }
    }
  } catch (...) {
    stop();
    throw;
  }
}

group_server::~group_server() { stop(); }

std::string group_server::base_url() const { return "http://" + bound_.to_string(); }

std::vector<server_statistics> group_server::statistics() const {
  if (stopped_) throw usage_error("group_server::statistics() after stop()");
  std::vector<server_statistics> all;
  for (std::size_t i = 0; i < states_.size(); ++i)
    all.push_back(group_->portal(i).call_sync([st = states_[i]] { return st->srv.statistics(); }));
  return all;
}

void group_server::stop() noexcept {
  if (stopped_) return;
  stopped_ = true;
  // Every loop stops accepting first, then each drains (in parallel on the
  // loops: the futures are awaited one after the other).
  std::vector<portal_future<void>> draining;
  for (std::size_t i = 0; i < states_.size(); ++i) {
    try {
      draining.push_back(group_->portal(i).submit(
          [st = states_[i]]() -> task<void> {
            st->srv.stop();
            if (st->serving) co_await *st->serving;
            st->serving.reset();
          },
          "group_server.stop"));
    } catch (...) {
    }
  }
  for (auto& f : draining) {
    try {
      if (f.wait_for(stop_timeout_) != std::future_status::ready) f.cancel();
      f.wait();
    } catch (...) {
      // The loop stopped first: its shutdown cancelled whatever was left.
    }
  }
  for (std::size_t i = 0; i < states_.size(); ++i) {
    try {
      // The last reference goes on the loop's thread, where the server lives.
      group_->portal(i).call_sync([st = std::move(states_[i])]() mutable { st.reset(); });
    } catch (...) {
    }
  }
  states_.clear();
}

}  // namespace spindle::http
