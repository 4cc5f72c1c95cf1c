#pragma once
/// \file
/// TCP: connect (with a timeout, trying a name's addresses Happy-Eyeballs
/// style), streams and listeners. Every operation is a cancellation point.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "spindle/async_fd.hpp"
#include "spindle/clock.hpp"
#include "spindle/net/address.hpp"
#include "spindle/net/errors.hpp"
#include "spindle/task.hpp"

namespace spindle::net {

class resolver;
struct connect_options;
class tcp_stream;
task<tcp_stream> connect(socket_address address, connect_options opts);

/// A connected TCP socket, owned (closed by the destructor).
///
/// **Thread safety:** use only on the thread of the loop it was made on.
/// One reader and one writer at a time.
/// **Cancellation:** read_some and write_all are cancellation points; a
/// write cancelled half-way leaves the stream in an unknown state (close it).
class tcp_stream {
 public:
  tcp_stream() noexcept = default;
  /// Adopts a connected, non-blocking socket on the running loop.
  explicit tcp_stream(int fd);
  tcp_stream(tcp_stream&& o) noexcept;
  tcp_stream& operator=(tcp_stream&& o) noexcept;
  tcp_stream(const tcp_stream&) = delete;
  tcp_stream& operator=(const tcp_stream&) = delete;
  ~tcp_stream();

  /// Reads what is available (at least one byte), waiting if nothing is;
  /// 0 at end of stream. Throws connection_error (reset, ...).
  task<std::size_t> read_some(std::span<std::byte> buffer);
  task<std::size_t> read_some(std::span<char> buffer) { return read_some(std::as_writable_bytes(buffer)); }
  /// Writes all of `data`. Throws connection_error (broken pipe, reset).
  task<void> write_all(std::span<const std::byte> data);
  task<void> write_all(std::string_view data) {
    return write_all(std::as_bytes(std::span(data.data(), data.size())));
  }
  /// Writes what the socket takes now, without waiting: the bytes written
  /// (0 if its send buffer is full). Throws connection_error. For callers
  /// that skip write_all's task when the whole message fits at once.
  std::size_t try_write(std::string_view data);

  /// Sends FIN: the peer reads end of stream; reading stays possible.
  void shutdown_write() noexcept;
  /// Closes now (an RST if unread data remains). Idempotent.
  void close() noexcept;
  /// Closes with an RST (SO_LINGER 0): for tests and for abandoning a
  /// connection whose state is unknown.
  void reset() noexcept;

  void set_nodelay(bool on);
  /// TCP keep-alive: probes after `idle` of silence, every `interval`, `count` times.
  void set_keepalive(bool on, std::chrono::seconds idle = std::chrono::seconds(60),
                     std::chrono::seconds interval = std::chrono::seconds(10), int count = 5);

  [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
  [[nodiscard]] int native_handle() const noexcept { return fd_; }
  /// False when the last read_some() emptied the receive queue and no data,
  /// hang-up or error has arrived since: an idle keep-alive connection in
  /// that state is known to be live without a syscall. True otherwise
  /// (including "don't know").
  [[nodiscard]] bool maybe_readable() const noexcept { return io_ == nullptr || io_->may_read(); }
  /// Readiness of the socket, for a layer that does its own I/O on
  /// native_handle() (TLS). As with async_fd: wait only after an operation
  /// on the socket would have blocked (EAGAIN).
  [[nodiscard]] async_fd::wait_awaiter readable();
  [[nodiscard]] async_fd::wait_awaiter writable();
  [[nodiscard]] socket_address local_address() const;
  [[nodiscard]] socket_address peer_address() const;

 private:
  friend task<tcp_stream> connect(socket_address address, connect_options opts);
  int fd_ = -1;
  std::unique_ptr<async_fd> io_;
};

struct connect_options {
  /// The whole connect (every address tried); nullopt: none (zero or
  /// negative: already passed). Also bounded by the caller's deadline
  /// (with_timeout, ...), whichever is earlier.
  std::optional<duration> timeout = std::chrono::seconds(10);
  /// Happy Eyeballs (RFC 8305): the next address is tried when the
  /// previous attempt fails or after this delay, whichever comes first;
  /// the first to connect wins and the others are cancelled.
  duration attempt_delay = std::chrono::milliseconds(250);
  bool nodelay = true;
};

/// Connects to one address. Throws connect_error (refused, unreachable) or
/// timeout_error.
task<tcp_stream> connect(socket_address address, connect_options opts);
inline task<tcp_stream> connect(socket_address address) { return connect(address, connect_options{}); }
/// Connects to the first of `addresses` that accepts (Happy Eyeballs).
/// Throws connect_error naming every address tried and why, or
/// timeout_error when the timeout expired first.
task<tcp_stream> connect(std::vector<socket_address> addresses, connect_options opts = {});
/// Resolves `host` (IP literals and localhost need no lookup) and connects.
/// Throws dns_error, connect_error or timeout_error.
task<tcp_stream> connect(resolver& dns, std::string host, std::uint16_t port, connect_options opts = {});

struct listen_options {
  int backlog = 1024;
  bool reuse_address = true;
  /// SO_REUSEPORT: several listeners (one per loop of a loop_group) bind
  /// the same address and port, and the kernel spreads new connections
  /// over them (by a hash of the connection's addresses). Every listener
  /// of the port must set it.
  bool reuse_port = false;
};

/// A listening TCP socket.
///
/// **Thread safety:** use only on the thread of the loop it was made on.
/// **Cancellation:** accept() is a cancellation point.
class tcp_listener {
 public:
  tcp_listener() noexcept = default;
  /// Binds and listens (port 0: an ephemeral port; see local_address()).
  /// On the running loop's thread. Throws system_error.
  static tcp_listener bind(socket_address address, listen_options opts = {});
  tcp_listener(tcp_listener&& o) noexcept;
  tcp_listener& operator=(tcp_listener&& o) noexcept;
  tcp_listener(const tcp_listener&) = delete;
  tcp_listener& operator=(const tcp_listener&) = delete;
  ~tcp_listener();

  /// The next connection. Transient errors (EMFILE, ECONNABORTED, ...) are
  /// retried after a short pause rather than thrown.
  task<tcp_stream> accept();
  /// As accept(), but when the process or system is out of descriptors or
  /// memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) it returns at once: a closed
  /// stream, with the errno in `*exhausted`. The caller sheds load (closes
  /// idle connections, shed()) instead of leaving clients in the backlog.
  task<tcp_stream> accept_or_exhausted(int* exhausted);
  /// Keeps a spare descriptor (/dev/null) for shed(). True if one is held.
  bool reserve_descriptor() noexcept;
  /// Out of descriptors: frees the spare, accepts one pending connection
  /// with it, writes `farewell` (without waiting: one send, what fits),
  /// closes it and takes the spare again. False if none was pending or no
  /// spare was held.
  bool shed(std::string_view farewell) noexcept;
  [[nodiscard]] socket_address local_address() const;
  [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
  void close() noexcept;

 private:
  int fd_ = -1;
  int spare_ = -1;  // reserve_descriptor()
  std::unique_ptr<async_fd> io_;
};

}  // namespace spindle::net
