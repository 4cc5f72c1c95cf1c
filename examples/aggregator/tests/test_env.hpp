#pragma once
// Helpers for the aggregator's tests: the throwaway cluster's state file,
// a blocking HTTP/1.1 client, direct PostgreSQL queries, and the process's
// descriptor and thread counts.

#include <cstdint>
#include <string>

namespace aggregator::testing {

/// The cluster a CTest fixture started (scripts/pg-cluster.sh start STATE).
struct pg_cluster {
  std::string state_file;
  std::string conninfo;
};
/// Reads STATE; fails the test (throws) when the fixture did not run.
pg_cluster read_cluster(const std::string& state_file);
/// Runs `scripts/pg-cluster.sh <command> <state>`; returns its exit status.
int cluster_command(const std::string& command, const std::string& state_file);

struct http_result {
  int status = 0;
  std::string body;
};

/// One keep-alive connection to 127.0.0.1:port; blocking, with a timeout
/// on every read and write.
class blocking_client {
 public:
  explicit blocking_client(std::uint16_t port, int timeout_ms = 30'000);
  ~blocking_client();
  blocking_client(const blocking_client&) = delete;
  blocking_client& operator=(const blocking_client&) = delete;
  /// Sends GET target; returns the response (status 0 and the reason in
  /// body when the connection failed; the client then reconnects next time).
  http_result get(const std::string& target);
  /// Sends raw bytes and reads `responses` responses.
  std::string raw(const std::string& bytes, int responses);

 private:
  bool ensure_connected();
  std::uint16_t port_;
  int timeout_ms_;
  int fd_ = -1;
  std::string pending_;
};

/// A one-shot GET on a fresh connection.
http_result http_get(std::uint16_t port, const std::string& target);

/// The first column of the first row of `sql`, run on its own blocking
/// connection (libpq's PQexec).
std::string pg_scalar(const std::string& conninfo, const std::string& sql);

std::size_t open_fds();
std::size_t thread_count();

/// The value of the first sample whose line starts with `prefix` in a
/// Prometheus text exposition ("name{labels}"), or -1.
double metric(const std::string& exposition, const std::string& prefix);

}  // namespace aggregator::testing
