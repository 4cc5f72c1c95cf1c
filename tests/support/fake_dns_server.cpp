#include "support/fake_dns_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <stdexcept>

namespace spindle::test {

namespace {

constexpr std::size_t max_connections = 16;
constexpr int poll_ms = 20;  // how often the thread looks at stop_

std::string normalize(std::string_view name) {
  std::string out(name);
  if (!out.empty() && out.back() == '.') out.pop_back();
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void put16(std::string& s, std::uint16_t v) {
  s += static_cast<char>(v >> 8);
  s += static_cast<char>(v & 0xff);
}

void put32(std::string& s, std::uint32_t v) {
  put16(s, static_cast<std::uint16_t>(v >> 16));
  put16(s, static_cast<std::uint16_t>(v & 0xffff));
}

std::uint16_t get16(std::string_view s, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(s[at]) << 8) |
                                    static_cast<unsigned char>(s[at + 1]));
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

}  // namespace

fake_dns_server::fake_dns_server() {
  // UDP and TCP on the same port number (c-ares retries a truncated answer
  // over TCP to the server's port). Another process may take the port in
  // between: a bounded number of attempts.
  for (int attempt = 0; attempt < 50 && port_ == 0; ++attempt) {
    udp_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    tcp_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    // Room for a burst of queries (the kernel caps this at rmem_max).
    int rcvbuf = 4 << 20;
    (void)::setsockopt(udp_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    int one = 1;
    (void)::setsockopt(tcp_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    if (udp_ >= 0 && tcp_ >= 0 && ::bind(udp_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(udp_, reinterpret_cast<sockaddr*>(&a), &len) == 0 &&
        ::bind(tcp_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(tcp_, 16) == 0) {
      port_ = ntohs(a.sin_port);
    } else {
      if (udp_ >= 0) ::close(udp_);
      if (tcp_ >= 0) ::close(tcp_);
      udp_ = tcp_ = -1;
    }
  }
  if (port_ == 0)
    throw std::runtime_error("fake_dns_server: cannot bind UDP and TCP on one port of 127.0.0.1");
  thread_ = std::thread([this] { run(); });
}

fake_dns_server::~fake_dns_server() {
  stop_.store(true, std::memory_order_relaxed);  // the thread only polls the flag; join() orders the rest
  thread_.join();
  for (auto& c : conns_) ::close(c.fd);
  ::close(udp_);
  ::close(tcp_);
}

void fake_dns_server::add(std::string_view name, const std::vector<std::string>& addresses,
                          std::uint32_t ttl) {
  entry e;
  e.ttl = ttl;
  for (const auto& text : addresses) {
    unsigned char buf[16];
    if (::inet_pton(AF_INET, text.c_str(), buf) == 1) {
      e.records.push_back({type_a, std::string(reinterpret_cast<char*>(buf), 4)});
    } else if (::inet_pton(AF_INET6, text.c_str(), buf) == 1) {
      e.records.push_back({type_aaaa, std::string(reinterpret_cast<char*>(buf), 16)});
    } else {
      throw std::invalid_argument("fake_dns_server: not an IP address: " + text);
    }
  }
  std::lock_guard lock(mutex_);
  table_[normalize(name)] = std::move(e);
}

void fake_dns_server::never_answer(std::string_view name) {
  std::lock_guard lock(mutex_);
  silent_.insert(normalize(name));
}

void fake_dns_server::tcp_only(std::string_view name) {
  std::lock_guard lock(mutex_);
  tcp_only_.insert(normalize(name));
}

std::string fake_dns_server::servers() const { return "127.0.0.1:" + std::to_string(port_); }

std::size_t fake_dns_server::queries(std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto it = counts_.find(normalize(name));
  if (it == counts_.end()) return 0;
  std::size_t n = 0;
  for (const auto& [type, count] : it->second) n += count;
  return n;
}

std::size_t fake_dns_server::queries(std::string_view name, std::uint16_t qtype) const {
  std::lock_guard lock(mutex_);
  auto it = counts_.find(normalize(name));
  if (it == counts_.end()) return 0;
  auto t = it->second.find(qtype);
  return t == it->second.end() ? 0 : t->second;
}

std::size_t fake_dns_server::tcp_queries() const {
  std::lock_guard lock(mutex_);
  return tcp_count_;
}

std::size_t fake_dns_server::total_queries() const {
  std::lock_guard lock(mutex_);
  return total_;
}

std::string fake_dns_server::answer(std::string_view q, bool over_tcp) {
  // Header (12 bytes), then one question: labels, QTYPE, QCLASS.
  if (q.size() < 12 || (get16(q, 2) & 0x8000) != 0 || get16(q, 4) != 1) return {};
  std::string name;
  std::size_t at = 12;
  for (;;) {
    if (at >= q.size()) return {};
    auto len = static_cast<unsigned char>(q[at++]);
    if (len == 0) break;
    if (len > 63 || at + len > q.size()) return {};  // no compression in a question
    if (!name.empty()) name += '.';
    name.append(q.substr(at, len));
    at += len;
  }
  if (at + 4 > q.size()) return {};
  const std::uint16_t qtype = get16(q, at);
  at += 4;
  const std::string_view question = q.substr(12, at - 12);
  name = normalize(name);

  std::uint16_t rcode = 0;
  bool truncated = false;
  std::vector<record> records;
  std::uint32_t ttl = 0;
  {
    std::lock_guard lock(mutex_);
    ++counts_[name][qtype];
    ++total_;
    if (over_tcp) ++tcp_count_;
    if (silent_.count(name) != 0) return {};
    auto it = table_.find(name);
    if (it == table_.end()) {
      rcode = 3;  // NXDOMAIN
    } else if (!over_tcp && tcp_only_.count(name) != 0) {
      truncated = true;
    } else {
      ttl = it->second.ttl;
      for (const auto& r : it->second.records) {
        if (r.type == qtype) records.push_back(r);
      }
    }
  }

  const std::uint16_t flags = get16(q, 2);
  std::string r;
  put16(r, get16(q, 0));  // ID
  // QR, the query's opcode, AA, the query's RD, RA, TC when truncated, RCODE.
  put16(r, static_cast<std::uint16_t>(0x8000 | (flags & 0x7800) | 0x0400 | (flags & 0x0100) | 0x0080 |
                                      (truncated ? 0x0200 : 0) | rcode));
  put16(r, 1);
  put16(r, static_cast<std::uint16_t>(records.size()));
  put16(r, 0);
  put16(r, 0);
  r.append(question);
  for (const auto& rec : records) {
    put16(r, 0xc00c);  // the name: a pointer to the question's
    put16(r, rec.type);
    put16(r, 1);  // IN
    put32(r, ttl);
    put16(r, static_cast<std::uint16_t>(rec.data.size()));
    r += rec.data;
  }
  return r;
}

void fake_dns_server::serve_udp() {
  // Bounded: what is queued now, at most 1024 datagrams per wake-up.
  for (int i = 0; i < 1024; ++i) {
    char buf[1500];
    sockaddr_storage from{};
    socklen_t len = sizeof from;
    ssize_t n = ::recvfrom(udp_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) return;  // EAGAIN (or an error: nothing to do about it here)
    std::string reply = answer(std::string_view(buf, static_cast<std::size_t>(n)), false);
    if (!reply.empty()) {
      (void)::sendto(udp_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }
}

void fake_dns_server::accept_tcp() {
  for (int i = 0; i < 16; ++i) {
    int fd = ::accept4(tcp_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (conns_.size() >= max_connections) {
      ::close(fd);
      continue;
    }
    conns_.push_back({fd, {}, {}});
  }
}

bool fake_dns_server::serve_tcp(connection& c, bool readable) {
  if (readable) {
    char buf[4096];
    for (int i = 0; i < 64; ++i) {
      ssize_t n = ::read(c.fd, buf, sizeof buf);
      if (n == 0) return false;
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        return false;
      }
      c.in.append(buf, static_cast<std::size_t>(n));
    }
    // Each message is preceded by its length (RFC 1035 4.2.2).
    while (c.in.size() >= 2 && c.in.size() >= 2u + get16(c.in, 0)) {
      std::size_t len = get16(c.in, 0);
      std::string reply = answer(std::string_view(c.in).substr(2, len), true);
      c.in.erase(0, 2 + len);
      if (!reply.empty()) {
        // Length and message in one write, so that the client finds both in
        // its socket at once.
        put16(c.out, static_cast<std::uint16_t>(reply.size()));
        c.out += reply;
      }
    }
  }
  while (!c.out.empty()) {
    ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    c.out.erase(0, static_cast<std::size_t>(n));
  }
  return true;
}

void fake_dns_server::run() noexcept {
  try {
    std::vector<pollfd> fds;
    while (!stop_.load(std::memory_order_relaxed)) {
      fds.clear();
      fds.push_back({udp_, POLLIN, 0});
      fds.push_back({tcp_, POLLIN, 0});
      for (const auto& c : conns_) {
        fds.push_back({c.fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
      }
      if (::poll(fds.data(), fds.size(), poll_ms) <= 0) continue;
      if (fds[0].revents != 0) serve_udp();
      if (fds[1].revents != 0) accept_tcp();
      // conns_ may have grown in accept_tcp: only the ones polled are looked at.
      for (std::size_t i = fds.size() - 2; i-- > 0;) {
        if (fds[i + 2].revents == 0) continue;
        if (!serve_tcp(conns_[i], (fds[i + 2].revents & (POLLIN | POLLHUP | POLLERR)) != 0)) {
          ::close(conns_[i].fd);
          conns_.erase(conns_.begin() + static_cast<std::ptrdiff_t>(i));
        }
      }
    }
  } catch (...) {
    // A test server that cannot allocate simply stops answering.
  }
}

}  // namespace spindle::test
