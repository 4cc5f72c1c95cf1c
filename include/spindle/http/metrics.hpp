#pragma once
/// \file
/// Prometheus families for the HTTP client's connection pool and the server.

#include <string_view>

#include "spindle/http/client.hpp"
#include "spindle/http/server.hpp"
#include "spindle/prometheus.hpp"

namespace spindle::http {

/// spindle_http_client_* families, labelled client="<name>".
void add_metrics(prometheus_exposition& e, const client_statistics& s, std::string_view name);
/// spindle_http_server_* families, labelled server="<name>".
void add_metrics(prometheus_exposition& e, const server_statistics& s, std::string_view name);

}  // namespace spindle::http
