#pragma once
// A tiny authoritative DNS server for tests: UDP (and TCP, for truncated
// answers) on 127.0.0.1 on an ephemeral port, served by its own thread.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace spindle::test {

/// Answers A and AAAA queries from a table: NXDOMAIN for names it does not
/// know, an empty NOERROR answer for a known name without records of the
/// asked type. Names are matched case-insensitively, without a trailing dot.
///
/// **Thread safety:** every method is safe from any thread; the server
/// thread runs until the destructor, which stops and joins it (it checks
/// for the stop every 20 ms).
/// **Cancellation:** not applicable.
class fake_dns_server {
 public:
  static constexpr std::uint16_t type_a = 1;
  static constexpr std::uint16_t type_aaaa = 28;

  fake_dns_server();
  ~fake_dns_server();
  fake_dns_server(const fake_dns_server&) = delete;
  fake_dns_server& operator=(const fake_dns_server&) = delete;

  /// Adds (or replaces) `name`: IPv4 and IPv6 addresses as text, one TTL.
  void add(std::string_view name, const std::vector<std::string>& addresses, std::uint32_t ttl = 300);
  /// Queries for `name` are counted and never answered.
  void never_answer(std::string_view name);
  /// Over UDP, answers for `name` come back truncated (TC, no records), so
  /// the client must ask again over TCP, where the full answer is served.
  void tcp_only(std::string_view name);

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// "127.0.0.1:<port>", for resolver_options::servers.
  [[nodiscard]] std::string servers() const;

  /// Queries received for `name` (every type, UDP and TCP).
  [[nodiscard]] std::size_t queries(std::string_view name) const;
  /// Queries received for `name` of `qtype` (type_a, type_aaaa).
  [[nodiscard]] std::size_t queries(std::string_view name, std::uint16_t qtype) const;
  /// Queries received over TCP, all names.
  [[nodiscard]] std::size_t tcp_queries() const;
  [[nodiscard]] std::size_t total_queries() const;

 private:
  struct record {
    std::uint16_t type;
    std::string data;  // 4 or 16 bytes
  };
  struct entry {
    std::vector<record> records;
    std::uint32_t ttl = 0;
  };
  struct connection {
    int fd;
    std::string in;   // bytes read, not yet a whole query
    std::string out;  // bytes to write
  };

  void run() noexcept;
  void serve_udp();
  void accept_tcp();
  // false: close the connection.
  bool serve_tcp(connection& c, bool readable);
  // The answer to `query` (empty: none), counting it.
  std::string answer(std::string_view query, bool over_tcp);

  int udp_ = -1;
  int tcp_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::vector<connection> conns_;  // server thread only

  mutable std::mutex mutex_;  // the table and the counters: the test thread configures and reads them
  std::map<std::string, entry> table_;
  std::set<std::string> silent_;
  std::set<std::string> tcp_only_;
  std::map<std::string, std::map<std::uint16_t, std::size_t>> counts_;
  std::size_t tcp_count_ = 0;
  std::size_t total_ = 0;

  std::thread thread_;  // last: started when everything above exists
};

}  // namespace spindle::test
