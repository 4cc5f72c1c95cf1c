#include "spindle/http/metrics.hpp"

#include <string>

namespace spindle::http {

void add_metrics(prometheus_exposition& e, const client_statistics& s, std::string_view name) {
  const prometheus_exposition::labels l{{"client", std::string(name)}};
  using enum metric_type;
  auto n = [](std::uint64_t v) { return static_cast<double>(v); };
  e.add_sample("spindle_http_client_connections_open", gauge, "Pooled connections open.", l, n(s.open));
  e.add_sample("spindle_http_client_connections_idle", gauge, "Pooled connections idle.", l, n(s.idle));
  e.add_sample("spindle_http_client_connections_in_use", gauge, "Pooled connections carrying a request.", l,
               n(s.in_use));
  e.add_sample("spindle_http_client_requests_waiting", gauge, "Requests queued for a connection.", l,
               n(s.waiting));
  e.add_sample("spindle_http_client_connections_created_total", counter, "Connections made.", l,
               n(s.created));
  e.add_sample("spindle_http_client_connections_failed_total", counter, "Connections closed after an error.",
               l, n(s.failed));
  e.add_sample("spindle_http_client_requests_reused_total", counter, "Requests sent on a pooled connection.",
               l, n(s.reused));
  e.add_sample("spindle_http_client_responses_total", counter, "Responses received.", l, n(s.requests));
}

void add_metrics(prometheus_exposition& e, const server_statistics& s, std::string_view name) {
  const prometheus_exposition::labels l{{"server", std::string(name)}};
  using enum metric_type;
  auto n = [](std::uint64_t v) { return static_cast<double>(v); };
  e.add_sample("spindle_http_server_connections_open", gauge, "Connections open.", l, n(s.connections_open));
  e.add_sample("spindle_http_server_connections_accepted_total", counter, "Connections accepted.", l,
               n(s.connections_accepted));
  e.add_sample("spindle_http_server_connections_rejected_total", counter, "Connections over the limit.", l,
               n(s.connections_rejected));
  e.add_sample("spindle_http_server_requests_total", counter, "Requests answered.", l, n(s.requests));
  e.add_sample("spindle_http_server_requests_in_flight", gauge, "Requests being handled.", l,
               n(s.requests_in_flight));
  e.add_sample("spindle_http_server_bad_requests_total", counter,
               "Malformed, too large or too slow requests.", l, n(s.bad_requests));
  e.add_sample("spindle_http_server_handler_failures_total", counter, "Handlers that threw (answered 500).",
               l, n(s.handler_failures));
  // The defences of issue #15, one family each (docs/net.md lists them).
  e.add_sample("spindle_http_server_connections_evicted_total", counter,
               "Idle connections closed to admit new ones.", l, n(s.connections_evicted));
  e.add_sample("spindle_http_server_fd_exhaustion_total", counter,
               "Accepts that found no descriptor (EMFILE, ENFILE).", l, n(s.fd_exhaustion));
  e.add_sample("spindle_http_server_connections_shed_total", counter,
               "Connections answered 503 through the reserve descriptor.", l, n(s.connections_shed));
  e.add_sample("spindle_http_server_heads_rejected_total", counter,
               "Request heads over max_header_bytes or max_header_fields (431).", l, n(s.heads_rejected));
  e.add_sample("spindle_http_server_bodies_rejected_total", counter,
               "Request bodies over max_body_bytes (413).", l, n(s.bodies_rejected));
  e.add_sample("spindle_http_server_bodies_deferred_total", counter,
               "Request bodies over max_buffered_body_total (503).", l, n(s.bodies_deferred));
  const char* timeouts_help = "Connections timed out, by phase (header, body, send).";
  for (const auto& [phase, v] : {std::pair{"header", s.header_timeouts}, std::pair{"body", s.body_timeouts},
                                 std::pair{"send", s.send_timeouts}}) {
    prometheus_exposition::labels lp = l;
    lp.emplace_back("phase", phase);
    e.add_sample("spindle_http_server_timeouts_total", counter, timeouts_help, lp, n(v));
  }
}

}  // namespace spindle::http
