#include "test_env.hpp"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <stdexcept>

#include "spindle/http/parser.hpp"

#ifndef AGGREGATOR_CLUSTER_SCRIPT
#error "AGGREGATOR_CLUSTER_SCRIPT must name scripts/pg-cluster.sh"
#endif

namespace aggregator::testing {

pg_cluster read_cluster(const std::string& state_file) {
  std::ifstream in(state_file);
  if (!in)
    throw std::runtime_error(
        "no PostgreSQL cluster state at " + state_file +
        " (the CTest fixture starts it: run through ctest, or scripts/pg-cluster.sh start " + state_file +
        ")");
  pg_cluster c{state_file, {}};
  std::string line;
  while (std::getline(in, line)) {
    const std::string key = "PG_CONNINFO=";
    if (line.rfind(key, 0) == 0) {
      std::string v = line.substr(key.size());
      if (v.size() >= 2 && v.front() == '\'' && v.back() == '\'') v = v.substr(1, v.size() - 2);
      c.conninfo = v;
    }
  }
  if (c.conninfo.empty()) throw std::runtime_error(state_file + " has no PG_CONNINFO");
  return c;
}

int cluster_command(const std::string& command, const std::string& state_file) {
  const std::string cmd = std::string(AGGREGATOR_CLUSTER_SCRIPT) + " " + command + " '" + state_file + "'";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

blocking_client::blocking_client(std::uint16_t port, int timeout_ms) : port_(port), timeout_ms_(timeout_ms) {}

blocking_client::~blocking_client() {
  if (fd_ >= 0) ::close(fd_);
}

bool blocking_client::ensure_connected() {
  if (fd_ >= 0) return true;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  pending_.clear();
  return true;
}

std::string blocking_client::raw(const std::string& bytes, int responses) {
  std::string out;
  if (!ensure_connected()) return out;
  std::string_view data = bytes;
  while (!data.empty()) {
    const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return out;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  for (int i = 0; i < responses; ++i) {
    spindle::http::message_parser p(spindle::http::message_parser::kind::response);
    std::array<char, 16 * 1024> buf{};
    while (!p.complete()) {
      if (!pending_.empty()) {
        const std::size_t used = p.feed(std::span<const char>(pending_.data(), pending_.size()));
        pending_.erase(0, used);
        continue;
      }
      const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
      if (n <= 0) return out;
      const std::size_t used = p.feed(std::span<const char>(buf.data(), static_cast<std::size_t>(n)));
      pending_.append(buf.data() + used, static_cast<std::size_t>(n) - used);
    }
    // Each response as "\n--\n<status>\n--\n<body>".
    out += "\n--\n";
    out += std::to_string(p.response_message().status);
    out += "\n--\n";
    out += p.response_message().body;
  }
  return out;
}

http_result blocking_client::get(const std::string& target) {
  http_result r;
  if (!ensure_connected()) {
    r.body = "connect failed";
    return r;
  }
  const std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  std::string_view data = req;
  try {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    spindle::http::message_parser p(spindle::http::message_parser::kind::response);
    std::array<char, 16 * 1024> buf{};
    while (!p.complete()) {
      if (!pending_.empty()) {
        const std::size_t used = p.feed(std::span<const char>(pending_.data(), pending_.size()));
        pending_.erase(0, used);
        continue;
      }
      const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
      if (n <= 0) throw std::runtime_error(n == 0 ? "connection closed" : "recv failed or timed out");
      const std::size_t used = p.feed(std::span<const char>(buf.data(), static_cast<std::size_t>(n)));
      pending_.append(buf.data() + used, static_cast<std::size_t>(n) - used);
    }
    r.status = p.response_message().status;
    r.body = std::move(p.response_message().body);
    if (!p.keep_alive()) {
      ::close(fd_);
      fd_ = -1;
    }
  } catch (const std::exception& e) {
    ::close(fd_);
    fd_ = -1;
    r.status = 0;
    r.body = e.what();
  }
  return r;
}

http_result http_get(std::uint16_t port, const std::string& target) {
  blocking_client c(port);
  return c.get(target);
}

std::string pg_scalar(const std::string& conninfo, const std::string& sql) {
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(conninfo.c_str()), &PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK)
    throw std::runtime_error(std::string("pg_scalar: ") + PQerrorMessage(conn.get()));
  std::unique_ptr<PGresult, decltype(&PQclear)> res(PQexec(conn.get(), sql.c_str()), &PQclear);
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK || PQntuples(res.get()) < 1)
    throw std::runtime_error(std::string("pg_scalar: ") + PQerrorMessage(conn.get()));
  return PQgetvalue(res.get(), 0, 0);
}

std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

double metric(const std::string& exposition, const std::string& prefix) {
  std::size_t at = 0;
  while ((at = exposition.find(prefix, at)) != std::string::npos) {
    if (at == 0 || exposition[at - 1] == '\n') {
      const std::size_t end = exposition.find('\n', at);
      const std::string line = exposition.substr(at, end - at);
      return std::strtod(line.substr(line.rfind(' ') + 1).c_str(), nullptr);
    }
    at += prefix.size();
  }
  return -1;
}

}  // namespace aggregator::testing
