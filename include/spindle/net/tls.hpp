#pragma once
/// \file
/// TLS over a tcp_stream (OpenSSL 3): a client that verifies the server
/// against the system's CA store by default, and a server (for tests and the
/// demo). Errors are tls_error with OpenSSL's reason.

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "spindle/net/errors.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/task.hpp"

namespace spindle::net {

struct tls_client_options {
  /// Verify the server's certificate chain and host name. Turning this off
  /// is explicit and shows in the CLI as --insecure.
  bool verify = true;
  /// A PEM file of trusted CAs instead of the system store (pinning a
  /// private CA); empty: the system store (/etc/ssl/certs).
  std::string ca_file{};
  /// A directory of trusted CAs, hashed by `openssl rehash` (curl's
  /// --capath); with ca_file, both are trusted. Either one replaces the
  /// system store.
  std::string ca_path{};
  /// A client certificate (PEM chain) and its private key (PEM), for
  /// servers that ask for one (curl's --cert/--key); the key defaults to
  /// the certificate file.
  std::string certificate_file{};
  std::string key_file{};
};

struct tls_server_options {
  /// PEM certificate chain and private key, as files or as PEM text.
  std::string certificate_file{};
  std::string key_file{};
  std::string certificate_pem{};
  std::string key_pem{};
  /// When set, clients must present a certificate signed by a CA of this
  /// PEM file (the handshake fails otherwise).
  std::string client_ca_file{};
};

/// An OpenSSL SSL_CTX, shared by the connections made with it. Cheap to copy.
///
/// **Thread safety:** a context may be shared by loops on several threads.
class tls_context {
 public:
  /// Throws tls_error (a CA file that cannot be read, ...).
  static tls_context client(const tls_client_options& opts = {});
  /// Throws tls_error (a certificate or key that cannot be loaded).
  static tls_context server(const tls_server_options& opts);

  struct impl;
  [[nodiscard]] const std::shared_ptr<impl>& handle() const noexcept { return impl_; }

 private:
  std::shared_ptr<impl> impl_;
};

/// A TLS connection over an owned tcp_stream.
///
/// **Thread safety:** as tcp_stream.
/// **Cancellation:** every operation is a cancellation point; a cancelled
/// handshake or write leaves the connection unusable (close it).
class tls_stream {
 public:
  tls_stream() noexcept;
  tls_stream(tls_stream&&) noexcept;
  tls_stream& operator=(tls_stream&&) noexcept;
  tls_stream(const tls_stream&) = delete;
  tls_stream& operator=(const tls_stream&) = delete;
  ~tls_stream();

  /// Runs the client handshake: SNI and (with verify) host name checking
  /// against `server_name`. Throws tls_error ("certificate verify failed:
  /// self-signed certificate", ...) or connection_error.
  static task<tls_stream> connect(tcp_stream stream, tls_context ctx, std::string server_name);
  /// Runs the server handshake.
  static task<tls_stream> accept(tcp_stream stream, tls_context ctx);

  /// As tcp_stream::read_some: 0 at a clean close_notify or end of stream.
  task<std::size_t> read_some(std::span<std::byte> buffer);
  task<std::size_t> read_some(std::span<char> buffer) { return read_some(std::as_writable_bytes(buffer)); }
  task<void> write_all(std::span<const std::byte> data);
  task<void> write_all(std::string_view data) {
    return write_all(std::as_bytes(std::span(data.data(), data.size())));
  }
  /// Sends close_notify (without waiting for the peer's).
  task<void> shutdown();
  void close() noexcept;

  [[nodiscard]] bool is_open() const noexcept;
  [[nodiscard]] tcp_stream& transport() noexcept { return tcp_; }
  /// The negotiated protocol version ("TLSv1.3").
  [[nodiscard]] std::string version() const;

 private:
  struct ssl_deleter {
    void operator()(void* ssl) const noexcept;
  };
  tcp_stream tcp_;
  std::unique_ptr<void, ssl_deleter> ssl_;  // SSL*
  tls_context ctx_;
};

}  // namespace spindle::net
