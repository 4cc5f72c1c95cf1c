// TLS over tcp_stream with OpenSSL 3, on the non-blocking socket itself:
// SSL_ERROR_WANT_READ / WANT_WRITE mean the socket returned EAGAIN, which is
// exactly when async_fd's edge-triggered contract allows waiting.

#include "spindle/net/tls.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace spindle::net {

struct tls_context::impl {
  SSL_CTX* ctx = nullptr;
  bool verify = true;
  ~impl() { SSL_CTX_free(ctx); }
};

namespace {

// OpenSSL's queued reason(s), e.g. "error:0A000086:SSL routines::certificate verify failed".
std::string openssl_reasons() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    const char* reason = ERR_reason_error_string(e);
    out += reason != nullptr ? reason : buf;
  }
  return out.empty() ? "unknown error" : out;
}

[[noreturn]] void throw_tls(const std::string& what) { throw tls_error(what + ": " + openssl_reasons()); }

SSL_CTX* new_ctx(const SSL_METHOD* method) {
  SSL_CTX* ctx = SSL_CTX_new(method);
  if (ctx == nullptr) throw_tls("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Peers that close without close_notify (common for HTTP) read as end of
  // stream; the HTTP layer checks lengths itself.
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return ctx;
}

// Why an operation failed, as an exception.
[[noreturn]] void throw_io_error(SSL* ssl, int err, const char* during) {
  if (err == SSL_ERROR_SSL) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      ERR_clear_error();
      throw tls_error(std::string(during) +
                      ": certificate verify failed: " + X509_verify_cert_error_string(verify));
    }
    throw_tls(during);
  }
  if (err == SSL_ERROR_SYSCALL) {
    const int e = errno;
    const std::string queued = ERR_peek_error() != 0 ? openssl_reasons() : "";
    if (e != 0 && queued.empty()) throw connection_error(std::string(during) + ": " + std::strerror(e));
    throw tls_error(std::string(during) + ": " +
                    (queued.empty() ? "connection closed unexpectedly" : queued));
  }
  if (err == SSL_ERROR_ZERO_RETURN) throw tls_error(std::string(during) + ": peer closed the connection");
  throw tls_error(std::string(during) + ": SSL error " + std::to_string(err));
}

}  // namespace

void tls_stream::ssl_deleter::operator()(void* ssl) const noexcept { SSL_free(static_cast<SSL*>(ssl)); }

tls_context tls_context::client(const tls_client_options& opts) {
  tls_context c;
  c.impl_ = std::make_shared<impl>();
  c.impl_->ctx = new_ctx(TLS_client_method());
  c.impl_->verify = opts.verify;
  if (opts.verify) {
    SSL_CTX_set_verify(c.impl_->ctx, SSL_VERIFY_PEER, nullptr);
    const bool system = opts.ca_file.empty() && opts.ca_path.empty();
    const int ok = system ? SSL_CTX_set_default_verify_paths(c.impl_->ctx)
                          : SSL_CTX_load_verify_locations(
                                c.impl_->ctx, opts.ca_file.empty() ? nullptr : opts.ca_file.c_str(),
                                opts.ca_path.empty() ? nullptr : opts.ca_path.c_str());
    if (ok != 1)
      throw_tls(system                 ? std::string("loading the system CA store")
                : opts.ca_path.empty() ? "loading CA file '" + opts.ca_file + "'"
                                       : "loading CA directory '" + opts.ca_path + "'");
  } else {
    SSL_CTX_set_verify(c.impl_->ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!opts.certificate_file.empty()) {
    const std::string& key = opts.key_file.empty() ? opts.certificate_file : opts.key_file;
    if (SSL_CTX_use_certificate_chain_file(c.impl_->ctx, opts.certificate_file.c_str()) != 1)
      throw_tls("loading client certificate '" + opts.certificate_file + "'");
    if (SSL_CTX_use_PrivateKey_file(c.impl_->ctx, key.c_str(), SSL_FILETYPE_PEM) != 1)
      throw_tls("loading client key '" + key + "'");
    if (SSL_CTX_check_private_key(c.impl_->ctx) != 1)
      throw_tls("the client key does not match its certificate");
  } else if (!opts.key_file.empty()) {
    throw tls_error("a client key ('" + opts.key_file + "') without its certificate");
  }
  return c;
}

tls_context tls_context::server(const tls_server_options& opts) {
  tls_context c;
  c.impl_ = std::make_shared<impl>();
  c.impl_->ctx = new_ctx(TLS_server_method());
  SSL_CTX* ctx = c.impl_->ctx;
  if (!opts.certificate_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, opts.certificate_file.c_str()) != 1)
      throw_tls("loading certificate '" + opts.certificate_file + "'");
  } else {
    BIO* bio = BIO_new_mem_buf(opts.certificate_pem.data(), static_cast<int>(opts.certificate_pem.size()));
    X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (cert == nullptr || SSL_CTX_use_certificate(ctx, cert) != 1) {
      X509_free(cert);
      throw_tls("loading the certificate");
    }
    X509_free(cert);
  }
  if (!opts.key_file.empty()) {
    if (SSL_CTX_use_PrivateKey_file(ctx, opts.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
      throw_tls("loading key '" + opts.key_file + "'");
  } else {
    BIO* bio = BIO_new_mem_buf(opts.key_pem.data(), static_cast<int>(opts.key_pem.size()));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (key == nullptr || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
      EVP_PKEY_free(key);
      throw_tls("loading the private key");
    }
    EVP_PKEY_free(key);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) throw_tls("the key does not match the certificate");
  if (!opts.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, opts.client_ca_file.c_str(), nullptr) != 1)
      throw_tls("loading client CA file '" + opts.client_ca_file + "'");
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(opts.client_ca_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return c;
}

tls_stream::tls_stream() noexcept = default;
tls_stream::tls_stream(tls_stream&&) noexcept = default;
tls_stream& tls_stream::operator=(tls_stream&&) noexcept = default;
tls_stream::~tls_stream() = default;

namespace {

SSL* make_ssl(const tls_context& ctx, tcp_stream& tcp) {
  if (!ctx.handle()) throw usage_error("tls: empty tls_context");
  if (!tcp.is_open()) throw connection_error("tls: the tcp_stream is closed");
  SSL* ssl = SSL_new(ctx.handle()->ctx);
  if (ssl == nullptr) throw_tls("SSL_new");
  if (SSL_set_fd(ssl, tcp.native_handle()) != 1) {
    SSL_free(ssl);
    throw_tls("SSL_set_fd");
  }
  return ssl;
}

// Drives an OpenSSL call until it completes, waiting on the socket as asked.
template <class Op>
task<int> drive(SSL* ssl, tcp_stream& tcp, Op op, const char* during, bool zero_is_eof) {
  // A cancellation point even when OpenSSL has the bytes already (checks first).
  if (detail::cancel_pending()) throw cancelled_error();
  for (;;) {
    ERR_clear_error();
    errno = 0;
    const int r = op();
    if (r > 0) co_return r;
    const int err = SSL_get_error(ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
      co_await tcp.readable();
    } else if (err == SSL_ERROR_WANT_WRITE) {
      co_await tcp.writable();
    } else if (zero_is_eof && err == SSL_ERROR_ZERO_RETURN) {
      co_return 0;
    } else {
      throw_io_error(ssl, err, during);
    }
  }
}

}  // namespace

task<tls_stream> tls_stream::connect(tcp_stream stream, tls_context ctx, std::string server_name) {
  tls_stream s;
  s.ssl_.reset(make_ssl(ctx, stream));
  s.tcp_ = std::move(stream);
  s.ctx_ = std::move(ctx);
  SSL* ssl = static_cast<SSL*>(s.ssl_.get());
  const bool is_ip = socket_address::parse(server_name, 0).has_value();
  if (!server_name.empty() && !is_ip) SSL_set_tlsext_host_name(ssl, server_name.c_str());  // SNI
  if (s.ctx_.handle()->verify && !server_name.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str())
                         : X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), server_name.size());
    if (ok != 1) throw_tls("tls: setting the expected name '" + server_name + "'");
  }
  SSL_set_connect_state(ssl);
  const std::string during =
      "tls handshake with " + (server_name.empty() ? s.tcp_.peer_address().to_string() : server_name);
  co_await drive(
      ssl, s.tcp_, [ssl] { return SSL_do_handshake(ssl); }, during.c_str(), false);
  co_return s;
}

task<tls_stream> tls_stream::accept(tcp_stream stream, tls_context ctx) {
  tls_stream s;
  s.ssl_.reset(make_ssl(ctx, stream));
  s.tcp_ = std::move(stream);
  s.ctx_ = std::move(ctx);
  SSL* ssl = static_cast<SSL*>(s.ssl_.get());
  SSL_set_accept_state(ssl);
  co_await drive(
      ssl, s.tcp_, [ssl] { return SSL_do_handshake(ssl); }, "tls handshake (server)", false);
  co_return s;
}

task<std::size_t> tls_stream::read_some(std::span<std::byte> buffer) {
  if (!ssl_) throw connection_error("read on a closed tls_stream");
  if (buffer.empty()) co_return 0;
  SSL* ssl = static_cast<SSL*>(ssl_.get());
  std::size_t got = 0;
  const int r = co_await drive(
      ssl, tcp_, [&] { return SSL_read_ex(ssl, buffer.data(), buffer.size(), &got); }, "tls read", true);
  co_return r > 0 ? got : 0;
}

task<void> tls_stream::write_all(std::span<const std::byte> data) {
  if (!ssl_) throw connection_error("write on a closed tls_stream");
  SSL* ssl = static_cast<SSL*>(ssl_.get());
  while (!data.empty()) {
    std::size_t written = 0;
    co_await drive(
        ssl, tcp_, [&] { return SSL_write_ex(ssl, data.data(), data.size(), &written); }, "tls write", false);
    data = data.subspan(written);
  }
}

task<void> tls_stream::shutdown() {
  if (!ssl_) co_return;
  SSL* ssl = static_cast<SSL*>(ssl_.get());
  // 0: close_notify sent, the peer's not yet read (we do not wait for it).
  co_await drive(
      ssl, tcp_,
      [ssl] {
        const int r = SSL_shutdown(ssl);
        return r >= 0 ? 1 : r;
      },
      "tls shutdown", true);
}

void tls_stream::close() noexcept {
  ssl_.reset();
  tcp_.close();
}

bool tls_stream::is_open() const noexcept { return ssl_ != nullptr && tcp_.is_open(); }

std::string tls_stream::version() const {
  return ssl_ ? SSL_get_version(static_cast<const SSL*>(ssl_.get())) : "";
}

}  // namespace spindle::net
