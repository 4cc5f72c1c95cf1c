#pragma once
// Test-side tools for the adversarial suite against spindle's HTTP server:
// a loopback TCP client whose every byte a test scripts (raw_client), and a
// forked child process that runs a server on its own (server_process).
//
// Design
// ------
// Plain POSIX sockets and fork(), no spindle inside: the client must be free
// to misbehave (half a request, a byte a second, a reset), and a bug in
// spindle must not hide one in the test. The response parser here is
// written for the tests and is deliberately strict (CRLF line ends, no
// obsolete line folding): what a lenient client would forgive is what an
// adversarial test wants to see. A malformed response throws
// std::runtime_error, so it is a test failure with the reason, never a
// silent nullopt.
//
// server_process forks and runs a function in the child, for tests that
// need their own RLIMIT_NOFILE or must measure the server's memory apart
// from the test's. fork() copies only the calling thread and every open
// descriptor: start the child before opening connections in the parent
// (or they stay open in the child too), and from a process with no other
// thread holding a lock the child needs (a child that deadlocks is caught
// by the port timeout).
//
// Invariants
//  - Every wait is bounded: reads poll with the caller's timeout, writes
//    with write_timeout, the port report with port_timeout and a stop with
//    stop_timeout (then SIGKILL).
//  - Descriptors are close-on-exec and the socket is non-blocking; writes
//    use MSG_NOSIGNAL (a peer that went away is a failed send, never
//    SIGPIPE).
//  - Bytes received past one response are kept: read_response() reads
//    exactly one, and read_some(), read_until_close() return kept bytes
//    first. The stream is never reordered or silently dropped (except by
//    closed_by_peer(), which discards by design).

#include <sys/resource.h>
#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spindle::test {

/// One HTTP/1.x response as read by raw_client::read_response().
struct http_reply {
  /// "HTTP/1.1" or "HTTP/1.0", as received.
  std::string version;
  int status = 0;
  /// The reason phrase (possibly empty).
  std::string reason;
  /// Every header field in order, names and values as received (values
  /// without leading and trailing whitespace).
  std::vector<std::pair<std::string, std::string>> headers;
  /// The body, with chunked framing removed (trailers are dropped).
  std::string body;
  /// The head as received: status line and header lines through "\r\n\r\n".
  std::string head;
  /// True when the body was framed by Transfer-Encoding: chunked.
  bool chunked = false;

  /// The value of header `name` (case-insensitive); several fields of that
  /// name are joined with ", " in order (RFC 9110 §5.3). nullopt if absent.
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const;
};

/// One TCP connection to 127.0.0.1, every operation bounded by a timeout.
///
/// **Thread safety:** distinct objects: safe; a shared object: unsafe.
/// **Cancellation:** every call returns within its timeout (sends within
/// write_timeout); there is nothing else to cancel.
class raw_client {
 public:
  /// Bound of each send() (a server that stops reading).
  static constexpr std::chrono::seconds write_timeout{5};
  /// Bytes of one response head before read_response() throws.
  static constexpr std::size_t max_head_bytes = 1 << 20;

  /// Connects to 127.0.0.1:port within `timeout`, with TCP_NODELAY (so the
  /// pieces of send_slowly() leave as separate segments). Throws
  /// std::runtime_error naming the errno text.
  static raw_client connect(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(5));

  raw_client(raw_client&& other) noexcept;
  raw_client& operator=(raw_client&& other) noexcept;
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;
  /// Closes (with a FIN, unless close_with_reset() was called).
  ~raw_client();

  /// Sends all of `bytes`. False when the peer closed or reset the
  /// connection, or did not make room within write_timeout.
  bool send(std::string_view bytes);
  /// Sends `bytes` in pieces of `piece` bytes with `gap` between them;
  /// stops at the first failed send and returns false.
  bool send_slowly(std::string_view bytes, std::size_t piece, std::chrono::milliseconds gap);
  /// Sends a FIN (the connection stays open for reading).
  void shutdown_write() noexcept;
  /// Closes at once with an RST (SO_LINGER 0); later calls see a closed socket.
  void close_with_reset() noexcept;

  /// Bytes kept from an earlier read_response(), else what one read
  /// returns within `timeout`. Empty on timeout or when the peer closed:
  /// eof() and reset() tell which.
  std::string read_some(std::chrono::milliseconds timeout);
  /// Everything until the peer closes (EOF or RST) or `timeout` (in total)
  /// passes, kept bytes first.
  std::string read_until_close(std::chrono::milliseconds timeout);
  /// Reads exactly one response (bytes past it are kept for the next call);
  /// a 1xx is a response of its own (read again for the final one). The
  /// body is framed by Transfer-Encoding: chunked, else Content-Length,
  /// else by the close (FIN; an RST leaves it incomplete); 1xx, 204, 304
  /// and replies to HEAD (`head_request`) have none. nullopt on timeout or
  /// a close before the response is complete (the bytes stay kept).
  /// Throws std::runtime_error on a malformed response.
  std::optional<http_reply> read_response(std::chrono::milliseconds timeout, bool head_request = false);
  /// True if the peer closes (EOF or RST) within `timeout`; reads and
  /// discards whatever it sends meanwhile (and any kept bytes).
  bool closed_by_peer(std::chrono::milliseconds timeout);

  /// The peer's FIN was read.
  [[nodiscard]] bool eof() const noexcept { return eof_; }
  /// A read failed with ECONNRESET (the peer sent an RST).
  [[nodiscard]] bool reset() const noexcept { return error_ == ECONNRESET; }
  /// The errno of the last failed send (EPIPE, ECONNRESET; ETIMEDOUT after
  /// write_timeout), 0 if none failed. A failed send does not end reading:
  /// a server may answer (say, 413) and close while the client still sends.
  [[nodiscard]] int send_error() const noexcept { return send_error_; }
  /// The connection is over for reading (FIN, RST or another error).
  [[nodiscard]] bool closed() const noexcept { return eof_ || error_ != 0 || fd_ < 0; }
  /// The socket (-1 once closed by close_with_reset() or moved from).
  [[nodiscard]] int fd() const noexcept { return fd_; }

 private:
  enum class got { data, timeout, closed };
  explicit raw_client(int fd) : fd_(fd) {}
  // Appends what one recv returns before `deadline` to buffer_.
  got fill(std::chrono::steady_clock::time_point deadline);
  // Blocks until buffer_ holds `n` bytes: false on timeout or close.
  bool fill_to(std::size_t n, std::chrono::steady_clock::time_point deadline);
  void close() noexcept;

  int fd_ = -1;
  std::string buffer_;  // received, not returned yet
  bool eof_ = false;
  int error_ = 0;  // errno of the failed recv (or poll) that ended reading
  int send_error_ = 0;
};

/// A function run in a forked child, typically a server, with the port it
/// listens on reported to the parent through a pipe.
///
/// **Thread safety:** distinct objects: safe; a shared object: unsafe.
/// **Cancellation:** start() gives up after port_timeout (killing the
/// child); stop() and the destructor wait at most stop_timeout, then SIGKILL.
class server_process {
 public:
  /// How long start() waits for the child's report.
  static constexpr std::chrono::seconds port_timeout{10};
  /// How long stop() waits after SIGTERM before SIGKILL.
  static constexpr std::chrono::seconds stop_timeout{5};

  /// Forks. The child closes the pipe's read end, sets its soft
  /// RLIMIT_NOFILE to `nofile_limit` when given (hard limit unchanged),
  /// resets SIGTERM to its default action, and calls child_main(report_fd),
  /// then _exit(0); an exception is printed to stderr and _exit(3).
  /// child_main calls report_port() once listening and serves until the
  /// parent's SIGTERM ends it. The parent waits for that report; throws
  /// std::runtime_error (with the child's exit status if it ended) when the
  /// child ends or port_timeout passes first. The child gets SIGKILL when
  /// the thread that called start() ends (PR_SET_PDEATHSIG, so that a
  /// crashed test leaves no server behind): start it from the test's thread.
  static server_process start(std::function<void(int report_fd)> child_main,
                              std::optional<rlim_t> nofile_limit = std::nullopt);
  /// For child_main: writes "PORT\n" to `report_fd`. Throws std::system_error.
  static void report_port(int report_fd, std::uint16_t port);

  server_process(server_process&& other) noexcept;
  server_process& operator=(server_process&& other) noexcept;
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;
  /// stop() if still running.
  ~server_process();

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// The child's pid (-1 once stopped or moved from).
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  /// The child's resident set (VmRSS of /proc/<pid>/status) in bytes; 0
  /// when not running or unreadable.
  [[nodiscard]] std::size_t rss_bytes() const;
  /// SIGTERM, wait up to stop_timeout, else SIGKILL and wait; returns the
  /// wait status (WIFSIGNALED etc.). -1 if not running.
  int stop();

 private:
  server_process(pid_t pid, std::uint16_t port) : pid_(pid), port_(port) {}
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

/// Raises this process's soft RLIMIT_NOFILE to min(want, hard) (never
/// lowers it). Throws std::runtime_error naming both numbers when that is
/// below `want`.
void raise_nofile_limit(rlim_t want);

}  // namespace spindle::test
