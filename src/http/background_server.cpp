#include "spindle/http/background_server.hpp"

#include <optional>
#include <utility>

#include "spindle/error.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/join_handle.hpp"
#include "spindle/net/tcp.hpp"

namespace spindle::http {

// The loop-side part: made, used and destroyed on the server's loop thread.
struct background_server::state {
  state(handler h, server_options so) : srv(std::move(h), so) {}
  server srv;
  std::optional<join_handle<void>> serving;
};

namespace {
background_loop_options loop_options(const std::string& name) {
  background_loop_options o;
  o.loop.name = name;
  return o;
}
}  // namespace

background_server::background_server(handler h, background_server_options opts)
    : loop_(loop_options(opts.name)), stop_timeout_(opts.stop_timeout) {
  // The listener is bound on the loop's thread (its socket belongs to that
  // loop's reactor) and served by a task there.
  auto started = loop_.portal().call_sync(
      [h = std::move(h), so = opts.server, address = opts.address, name = opts.name]() mutable {
        auto st = std::make_shared<state>(std::move(h), so);
        net::tcp_listener listener = net::tcp_listener::bind(address);
        const net::socket_address bound = listener.local_address();
        st->serving.emplace(event_loop::current()->spawn(st->srv.serve(std::move(listener)), name));
        return std::make_pair(st, bound);
      });
  state_ = std::move(started.first);
  bound_ = started.second;
  port_ = bound_.port();
}

background_server::~background_server() { stop(); }

std::string background_server::base_url() const { return "http://" + bound_.to_string(); }

server_statistics background_server::statistics() const {
  if (stopped_) throw usage_error("background_server::statistics() after stop()");
  return loop_.portal().call_sync([st = state_] { return st->srv.statistics(); });
}

void background_server::stop() noexcept {
  if (stopped_) return;
  stopped_ = true;
  try {
    loop_.portal().call(
        [st = state_]() -> task<void> {
          st->srv.stop();
          if (st->serving) co_await *st->serving;
          st->serving.reset();
        },
        stop_timeout_, "background_server.stop");
  } catch (...) {
    // Timed out or failed: the loop's stop below cancels whatever is left.
  }
  try {
    // The last reference goes on the loop's thread, where the server lives.
    loop_.portal().call_sync([st = std::move(state_)]() mutable { st.reset(); });
  } catch (...) {
  }
  loop_.stop();
}

}  // namespace spindle::http
