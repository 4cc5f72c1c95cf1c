#pragma once
// A loopback TCP server whose every byte a test scripts, for the HTTP
// client's misbehaving-server tests: a handler per connection reads
// requests and writes whatever it likes (half a header, a reset, a body
// that never ends).
//
// Design
// ------
// Plain POSIX sockets and std::thread, no spindle inside: the server must
// be free to misbehave in ways a spindle server would not (and a bug in
// spindle must not hide one in the client). One thread accepts (polling
// the listener, so it sees the stop flag within accept_poll); each accepted
// connection runs the handler on a thread of its own, at most
// max_connections at once (more are closed at once, still counted). A
// connection is closed when its handler returns, unless the handler closed
// or reset it itself. Handler threads that ended are joined by the accept
// thread as it goes, so a long test does not collect threads.
//
// Invariants
//  - Every wait is bounded: reads and writes poll with a timeout, the accept
//    thread polls with accept_poll, and the destructor waits at most
//    stop_timeout for the handlers.
//  - A socket is closed only by its handler's thread, under its
//    connection's mutex; the destructor shuts sockets down under the same
//    mutex. So a shutdown never hits a descriptor number reused elsewhere.
//  - Descriptors are close-on-exec and non-blocking; writes use MSG_NOSIGNAL
//    (a peer that went away is a failed write, never SIGPIPE).
//
// Stopping (the destructor), in order:
//  1. Set the stop flag (stopping() turns true), shut the listener down
//     (which wakes the accept thread's poll), join the accept thread and
//     close the listener. No connection is accepted afterwards.
//  2. Shut every open connection down (SHUT_RDWR): a handler blocked in a
//     read sees EOF, one blocked in a write sees EPIPE, so handlers written
//     to return on a failed read or write (or on stopping()) return.
//  3. Wait up to stop_timeout for every handler to return, then join their
//     threads. A handler that does not return by then is a bug in the test:
//     the process aborts with a message rather than hang or leave a thread
//     running on freed state.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace spindle::test {

class raw_server;

/// One accepted connection, handed to the handler.
///
/// **Thread safety:** the I/O members are for the handler's thread only;
/// index() and stopping() are safe from any thread.
/// **Cancellation:** every call returns within its timeout, and at once
/// when the server is being destroyed (the socket is shut down under it).
class raw_connection {
 public:
  /// Bound of each write() (a peer that stops reading).
  static constexpr std::chrono::seconds write_timeout{5};
  /// Bytes of one request head before read_request() gives up.
  static constexpr std::size_t max_head_bytes = 1 << 20;

  raw_connection(const raw_connection&) = delete;
  raw_connection& operator=(const raw_connection&) = delete;
  ~raw_connection();

  /// Reads one request: the head up to and including "\r\n\r\n", plus a
  /// body of Content-Length bytes when the head has that header (chunked
  /// request bodies are not read). Bytes past it are kept for the next
  /// call. The head is recorded in the server's requests() once read.
  /// nullopt on EOF, error, timeout, or a head over max_head_bytes.
  std::optional<std::string> read_request(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  /// Writes all of `data` (waiting up to write_timeout for room). False
  /// when the connection is closed, the peer went away (EPIPE, ECONNRESET)
  /// or the wait timed out.
  bool write(std::string_view data);
  /// Sends a FIN (the connection stays open for reading).
  void shutdown_write() noexcept;
  /// Closes with an RST (SO_LINGER 0, then close).
  void reset() noexcept;
  /// Closes with a FIN (what happens anyway when the handler returns).
  void close() noexcept;
  /// Reads until the peer closes (EOF or an error such as ECONNRESET) or
  /// `timeout` passes: true when it closed. The bytes read meanwhile are
  /// kept (peer_sent_after()).
  bool wait_closed(std::chrono::milliseconds timeout);
  /// The bytes received and not returned by read_request() yet: what the
  /// peer sent after the last request (e.g. pipelined data, or what it sent
  /// while wait_closed() waited). Consumes them.
  std::string peer_sent_after();

  /// The connection's number, in the order accepted (0-based).
  [[nodiscard]] std::size_t index() const noexcept { return index_; }
  /// True once the server's destructor has started: loops in a handler end.
  [[nodiscard]] bool stopping() const noexcept;

 private:
  friend class raw_server;
  raw_connection(raw_server& server, int fd, std::size_t index) : server_(server), fd_(fd), index_(index) {}

  // Reads what arrives within `deadline` into buffer_: the bytes read, 0 at
  // EOF or error (closed_ is then set), nullopt when the deadline passed.
  std::optional<std::size_t> read_more(std::chrono::steady_clock::time_point deadline);
  // Shuts the socket down if still open (the destructor's step 2).
  void shut_down() noexcept;

  raw_server& server_;
  // Written only by the handler's thread, always under mutex_ (closing);
  // read by the destructor's thread under mutex_ (shutting down): a
  // shutdown can never reach a number reused after the close.
  mutable std::mutex mutex_;
  int fd_;
  const std::size_t index_;
  std::string buffer_;   // received, not yet returned (handler's thread only)
  bool closed_ = false;  // the peer closed or an error occurred (handler's thread only)
};

/// The server: see the file comment for its design and shutdown steps.
///
/// **Thread safety:** every member is safe from any thread, except the
/// destructor, which must not run on a handler's thread.
/// **Cancellation:** the destructor shuts every connection down and
/// returns once the handlers have (at most stop_timeout later).
class raw_server {
 public:
  using handler = std::function<void(raw_connection&)>;

  /// Handlers running at once; further connections are closed on accept.
  static constexpr std::size_t max_connections = 64;
  /// How often the accept thread looks at the stop flag.
  static constexpr std::chrono::milliseconds accept_poll{50};
  /// How long the destructor waits for handlers after shutting their
  /// sockets down.
  static constexpr std::chrono::seconds stop_timeout{10};

  /// Binds 127.0.0.1 (never a wider address) on an ephemeral port and
  /// starts accepting. The handler is called on a thread per connection,
  /// concurrently for concurrent connections. Throws std::system_error.
  explicit raw_server(handler h);
  /// Stops (see the file comment); never throws.
  ~raw_server();
  raw_server(const raw_server&) = delete;
  raw_server& operator=(const raw_server&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// "http://127.0.0.1:PORT".
  [[nodiscard]] std::string base_url() const;
  /// Connections accepted so far (including those closed over the limit).
  [[nodiscard]] std::size_t connections() const noexcept;
  /// Every request head read so far (any connection), in the order read,
  /// as received: request line and header lines through "\r\n\r\n".
  [[nodiscard]] std::vector<std::string> requests() const;
  /// Handlers running now.
  [[nodiscard]] std::size_t active() const;
  /// Waits until no handler runs (every accepted connection is closed on
  /// this side), or `limit` passed; returns whether none runs.
  bool wait_idle(std::chrono::milliseconds limit) const;

 private:
  friend class raw_connection;
  struct worker {
    std::shared_ptr<raw_connection> conn;
    std::thread thread;
    bool done = false;  // under mutex_
  };

  void accept_loop();
  void serve(worker* w) noexcept;
  void join_finished();
  void record(std::string head);

  handler handler_;
  int listener_ = -1;  // set before the accept thread starts, closed after it ends
  std::uint16_t port_ = 0;
  // Sequentially consistent (the default): it is read once per handler
  // loop turn, where the cost does not matter, and it then needs no argument.
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> accepted_{0};  // written by the accept thread; same reasoning
  std::thread acceptor_;

  // The accept thread adds workers, handler threads mark them done, the
  // accept thread and the destructor join them; tests read requests_.
  mutable std::mutex mutex_;
  mutable std::condition_variable idle_;
  std::list<worker> workers_;
  std::size_t active_ = 0;
  std::vector<std::string> requests_;
};

}  // namespace spindle::test
