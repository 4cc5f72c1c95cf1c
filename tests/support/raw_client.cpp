// raw_client and server_process: see the header for the design.

#include "support/raw_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace spindle::test {

namespace {

using steady = std::chrono::steady_clock;

std::runtime_error errno_error(const std::string& what, int err) {
  return std::runtime_error(what + ": " + std::generic_category().message(err));
}

// Milliseconds left until `deadline`, for poll() (rounded up, so that a poll
// never returns just before the deadline and spins).
int millis_until(steady::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now()).count();
  return left <= 0 ? 0 : left > 60'000 ? 60'000 : static_cast<int>(left);
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Throws for a response the server should never have sent, quoting (at most
// 200 bytes of) the offending text with control bytes escaped.
[[noreturn]] void malformed(const std::string& why, std::string_view where) {
  std::string quoted;
  for (const char c : where.substr(0, 200)) {
    if (c == '\r')
      quoted += "\\r";
    else if (c == '\n')
      quoted += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
      quoted += hex;
    } else {
      quoted += c;
    }
  }
  throw std::runtime_error("raw_client: malformed response: " + why + " in \"" + quoted + "\"");
}

// The status line and header fields of `head` (which ends in "\r\n\r\n").
http_reply parse_head(std::string_view head) {
  http_reply r;
  r.head = std::string(head);
  std::string_view rest = head.substr(0, head.size() - 2);  // each line keeps its CRLF
  bool first = true;
  while (!rest.empty()) {
    const std::size_t eol = rest.find("\r\n");
    const std::string_view line = rest.substr(0, eol);
    rest.remove_prefix(eol + 2);
    if (line.find_first_of("\r\n") != std::string_view::npos) malformed("a bare CR or LF", line);
    if (first) {
      first = false;
      // HTTP-version SP 3DIGIT SP [reason], lenient only about a missing
      // SP after the code (RFC 9112 §4 allows a recipient that).
      const auto digit = [](char c) { return c >= '0' && c <= '9'; };
      if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || !digit(line[7]) || line[8] != ' ' ||
          !digit(line[9]) || !digit(line[10]) || !digit(line[11]) || (line.size() > 12 && line[12] != ' '))
        malformed("a bad status line", line);
      r.version = std::string(line.substr(0, 8));
      r.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
      if (line.size() > 13) r.reason = std::string(line.substr(13));
      continue;
    }
    if (line.front() == ' ' || line.front() == '\t') malformed("obsolete line folding", line);
    const std::size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) malformed("a header line without a name", line);
    const std::string_view name = line.substr(0, colon);
    if (name.find_first_of(" \t") != std::string_view::npos) malformed("whitespace in a field name", line);
    r.headers.emplace_back(name, trim(line.substr(colon + 1)));
  }
  return r;
}

// A Content-Length value: one decimal number, nothing else (a list such as
// "5, 5" is legal for a lenient recipient but never sent by a good server).
std::size_t parse_length(std::string_view v) {
  std::size_t n = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size()) malformed("a bad Content-Length", v);
  return n;
}

// Whether the last transfer coding is "chunked".
bool chunked_last(std::string_view te) {
  const std::size_t comma = te.rfind(',');
  return iequals(trim(comma == std::string_view::npos ? te : te.substr(comma + 1)), "chunked");
}

// The status of a child that waitpid() reported, in words.
std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) +
           ")";
  return "wait status " + std::to_string(status);
}

// Reaps `pid` if it ends within `limit`: its wait status, nullopt if it
// still runs. Polls waitpid(WNOHANG): a SIGCHLD handler or a pidfd would
// be process-wide state a test does not own.
std::optional<int> wait_for_exit(pid_t pid, std::chrono::milliseconds limit) {
  const steady::time_point deadline = steady::now() + limit;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;  // ECHILD: reaped elsewhere, nothing to report
    if (steady::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// The child's side of server_process::start(); never returns.
[[noreturn]] void run_child(const int pipe_fds[2], pid_t parent, const std::function<void(int)>& child_main,
                            std::optional<rlim_t> nofile_limit) {
  ::close(pipe_fds[0]);
  // A crashed test must not leave a server behind (holding ctest's output
  // pipe open). The death signal follows the forking thread, see start().
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(4);
  // The parent's SIGTERM must end the child whatever the test process did
  // with the signal; this restores the default, nothing more.
  std::signal(SIGTERM, SIG_DFL);
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ::sigprocmask(SIG_UNBLOCK, &term, nullptr);
  try {
    if (nofile_limit) {
      rlimit r{};
      if (::getrlimit(RLIMIT_NOFILE, &r) != 0) throw errno_error("getrlimit", errno);
      r.rlim_cur = *nofile_limit;
      if (::setrlimit(RLIMIT_NOFILE, &r) != 0)
        throw errno_error("setrlimit(RLIMIT_NOFILE, " + std::to_string(*nofile_limit) + ")", errno);
    }
    child_main(pipe_fds[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "server_process child %d: %s\n", static_cast<int>(::getpid()), e.what());
    ::_exit(3);
  } catch (...) {
    std::fprintf(stderr, "server_process child %d: unknown exception\n", static_cast<int>(::getpid()));
    ::_exit(3);
  }
  ::_exit(0);
}

}  // namespace

// ---- http_reply -----------------------------------------------------------------

std::optional<std::string> http_reply::header(std::string_view name) const {
  std::optional<std::string> value;
  for (const auto& [n, v] : headers) {
    if (!iequals(n, name)) continue;
    if (value)
      *value += ", " + v;
    else
      value = v;
  }
  return value;
}

// ---- raw_client -----------------------------------------------------------------

raw_client raw_client::connect(std::uint16_t port, std::chrono::milliseconds timeout) {
  const std::string where = "raw_client: connect to 127.0.0.1:" + std::to_string(port);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw errno_error(where + ": socket", errno);
  raw_client c(fd);  // closes the socket if this throws
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) return c;
  if (errno != EINPROGRESS && errno != EINTR) throw errno_error(where, errno);
  const steady::time_point deadline = steady::now() + timeout;
  for (;;) {
    pollfd p{fd, POLLOUT, 0};
    const int ready = ::poll(&p, 1, millis_until(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) throw errno_error(where + ": poll", errno);
    if (ready == 0) throw errno_error(where, ETIMEDOUT);
    break;
  }
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) throw errno_error(where, err);
  return c;
}

raw_client::raw_client(raw_client&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      buffer_(std::move(other.buffer_)),
      eof_(other.eof_),
      error_(other.error_),
      send_error_(other.send_error_) {}

raw_client& raw_client::operator=(raw_client&& other) noexcept {
  if (this == &other) return *this;
  close();
  fd_ = std::exchange(other.fd_, -1);
  buffer_ = std::move(other.buffer_);
  eof_ = other.eof_;
  error_ = other.error_;
  send_error_ = other.send_error_;
  return *this;
}

raw_client::~raw_client() { close(); }

void raw_client::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool raw_client::send(std::string_view bytes) {
  if (fd_ < 0) return false;
  const steady::time_point deadline = steady::now() + write_timeout;
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      const int ready = ::poll(&p, 1, millis_until(deadline));
      if (ready == 0) {
        send_error_ = ETIMEDOUT;  // the peer stopped reading for write_timeout
        return false;
      }
      continue;  // writable, EINTR, or an error the next send reports
    }
    send_error_ = n < 0 ? errno : EIO;
    return false;
  }
  return true;
}

bool raw_client::send_slowly(std::string_view bytes, std::size_t piece, std::chrono::milliseconds gap) {
  piece = std::max<std::size_t>(piece, 1);
  while (!bytes.empty()) {
    const std::string_view now = bytes.substr(0, piece);
    if (!send(now)) return false;
    bytes.remove_prefix(now.size());
    if (!bytes.empty()) std::this_thread::sleep_for(gap);
  }
  return true;
}

void raw_client::shutdown_write() noexcept {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

void raw_client::close_with_reset() noexcept {
  if (fd_ < 0) return;
  const linger l{1, 0};  // close() then sends an RST and drops unsent data
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close();
}

raw_client::got raw_client::fill(steady::time_point deadline) {
  if (closed()) return got::closed;
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, millis_until(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) return got::timeout;
    if (ready > 0) {
      char buf[64 * 1024];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        buffer_.append(buf, static_cast<std::size_t>(n));
        return got::data;
      }
      if (n == 0) {
        eof_ = true;
        return got::closed;
      }
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
        if (steady::now() >= deadline) return got::timeout;
        continue;
      }
    }
    error_ = errno;  // ECONNRESET, or a failed poll
    return got::closed;
  }
}

bool raw_client::fill_to(std::size_t n, steady::time_point deadline) {
  while (buffer_.size() < n)
    if (fill(deadline) != got::data) return false;
  return true;
}

std::string raw_client::read_some(std::chrono::milliseconds timeout) {
  if (buffer_.empty()) fill(steady::now() + timeout);
  return std::exchange(buffer_, std::string());
}

std::string raw_client::read_until_close(std::chrono::milliseconds timeout) {
  const steady::time_point deadline = steady::now() + timeout;
  while (fill(deadline) == got::data) {
  }
  return std::exchange(buffer_, std::string());
}

bool raw_client::closed_by_peer(std::chrono::milliseconds timeout) {
  const steady::time_point deadline = steady::now() + timeout;
  for (;;) {
    buffer_.clear();
    const got g = fill(deadline);
    if (g != got::data) {
      buffer_.clear();
      return g == got::closed;
    }
  }
}

std::optional<http_reply> raw_client::read_response(std::chrono::milliseconds timeout, bool head_request) {
  const steady::time_point deadline = steady::now() + timeout;
  std::size_t head_end = 0;
  while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (buffer_.size() > max_head_bytes) malformed("no end of head within max_head_bytes", buffer_);
    if (fill(deadline) != got::data) return std::nullopt;
  }
  http_reply r = parse_head(std::string_view(buffer_).substr(0, head_end + 4));
  std::size_t pos = head_end + 4;  // the next byte of buffer_ to parse
  const bool no_body = r.status / 100 == 1 || r.status == 204 || r.status == 304 || head_request;
  const std::optional<std::string> te = r.header("transfer-encoding");
  const std::optional<std::string> length = r.header("content-length");
  if (no_body) {
    // Nothing to read.
  } else if (te && chunked_last(*te)) {
    r.chunked = true;
    // Finds the next CRLF-ended line from pos (reading as needed): its end,
    // nullopt on timeout or close.
    const auto next_line = [&]() -> std::optional<std::size_t> {
      std::size_t eol = 0;
      while ((eol = buffer_.find("\r\n", pos)) == std::string::npos) {
        if (buffer_.size() - pos > max_head_bytes) malformed("an endless chunk line", buffer_.substr(pos));
        if (fill(deadline) != got::data) return std::nullopt;
      }
      return eol;
    };
    for (;;) {
      const std::optional<std::size_t> eol = next_line();
      if (!eol) return std::nullopt;
      std::string_view line = std::string_view(buffer_).substr(pos, *eol - pos);
      line = trim(line.substr(0, line.find(';')));  // chunk extensions are ignored
      std::uint64_t size = 0;
      const auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
      if (line.empty() || ec != std::errc() || p != line.data() + line.size() || size > (1ULL << 40))
        malformed("a bad chunk size line", buffer_.substr(pos, *eol - pos));
      pos = *eol + 2;
      if (size == 0) break;
      if (!fill_to(pos + size + 2, deadline)) return std::nullopt;
      if (buffer_.compare(pos + size, 2, "\r\n") != 0)
        malformed("chunk data not followed by CRLF", buffer_.substr(pos + size, 16));
      r.body.append(buffer_, pos, size);
      pos += size + 2;
    }
    for (;;) {  // trailer fields, up to the empty line
      const std::optional<std::size_t> eol = next_line();
      if (!eol) return std::nullopt;
      const bool last = *eol == pos;
      pos = *eol + 2;
      if (last) break;
    }
  } else if (!te && length) {
    const std::size_t n = parse_length(*length);
    if (!fill_to(pos + n, deadline)) return std::nullopt;
    r.body = buffer_.substr(pos, n);
    pos += n;
  } else {
    // Delimited by the close: a FIN ends it, an RST may have cut it short.
    got g = got::data;
    while ((g = fill(deadline)) == got::data) {
    }
    if (g == got::timeout || !eof_ || error_ != 0) return std::nullopt;
    r.body = buffer_.substr(pos);
    pos = buffer_.size();
  }
  buffer_.erase(0, pos);
  return r;
}

// ---- server_process -------------------------------------------------------------

server_process server_process::start(std::function<void(int report_fd)> child_main,
                                     std::optional<rlim_t> nofile_limit) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw errno_error("server_process: pipe2", errno);
  std::fflush(nullptr);  // else the child could write the parent's buffered output again
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw errno_error("server_process: fork", err);
  }
  if (pid == 0) run_child(fds, parent, child_main, nofile_limit);
  ::close(fds[1]);
  server_process child(pid, 0);  // stops the child if this throws

  const auto fail = [&](const std::string& why) {
    ::close(fds[0]);
    // A child that ended on its own is reaped with its status; one that
    // hangs is killed (stop() sends SIGTERM first).
    std::optional<int> status = wait_for_exit(pid, std::chrono::milliseconds(200));
    child.pid_ = status ? -1 : pid;
    const int st = status ? *status : child.stop();
    return std::runtime_error("server_process: the child (pid " + std::to_string(pid) + ") " + why + "; it " +
                              describe(st));
  };
  std::string line;
  const steady::time_point deadline = steady::now() + port_timeout;
  while (line.find('\n') == std::string::npos) {
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, millis_until(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0)
      throw fail("did not report its port within " + std::to_string(port_timeout.count()) + " s");
    char buf[64];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw fail("ended before reporting its port");
    line.append(buf, static_cast<std::size_t>(n));
    if (line.size() > 32) break;
  }
  const std::string_view digits = std::string_view(line).substr(0, line.find('\n'));
  unsigned port = 0;
  const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size() || port == 0 || port > 65535)
    throw fail("reported \"" + line + "\", not a port");
  ::close(fds[0]);
  child.port_ = static_cast<std::uint16_t>(port);
  return child;
}

void server_process::report_port(int report_fd, std::uint16_t port) {
  char buf[8];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf - 1, port);
  *end = '\n';
  std::string_view out(buf, static_cast<std::size_t>(end + 1 - buf));
  while (!out.empty()) {
    const ssize_t n = ::write(report_fd, out.data(), out.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::system_error(errno, std::generic_category(), "server_process::report_port");
    out.remove_prefix(static_cast<std::size_t>(n));
  }
}

server_process::server_process(server_process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), port_(other.port_) {}

server_process& server_process::operator=(server_process&& other) noexcept {
  if (this == &other) return *this;
  stop();
  pid_ = std::exchange(other.pid_, -1);
  port_ = other.port_;
  return *this;
}

server_process::~server_process() { stop(); }

std::size_t server_process::rss_bytes() const {
  if (pid_ < 0) return 0;
  std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) != 0) continue;
    const std::string_view v = trim(std::string_view(line).substr(6));
    std::size_t kib = 0;
    std::from_chars(v.data(), v.data() + v.size(), kib);  // "1234 kB"
    return kib * 1024;
  }
  return 0;  // a zombie has no VmRSS line
}

int server_process::stop() {
  if (pid_ < 0) return -1;
  const pid_t pid = std::exchange(pid_, -1);
  ::kill(pid, SIGTERM);
  if (const std::optional<int> status = wait_for_exit(pid, stop_timeout)) return *status;
  ::kill(pid, SIGKILL);  // cannot be caught: the wait below is short
  int status = -1;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

void raise_nofile_limit(rlim_t want) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) throw errno_error("raise_nofile_limit: getrlimit", errno);
  if (r.rlim_cur >= want) return;
  r.rlim_cur = std::min(want, r.rlim_max);  // RLIM_INFINITY is the largest rlim_t
  if (::setrlimit(RLIMIT_NOFILE, &r) != 0) throw errno_error("raise_nofile_limit: setrlimit", errno);
  if (r.rlim_cur < want)
    throw std::runtime_error("raise_nofile_limit: wanted " + std::to_string(want) +
                             " descriptors, but the hard RLIMIT_NOFILE is " + std::to_string(r.rlim_max));
}

}  // namespace spindle::test
