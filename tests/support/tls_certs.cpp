#include "support/tls_certs.hpp"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace spindle::test {

namespace {

std::string bio_string(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

bool is_ip(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("tls_certs: ") + what);
}

}  // namespace

certificate self_signed(const std::vector<std::string>& names, int days) {
  check(!names.empty(), "no names");
  EVP_PKEY* key = EVP_EC_gen("P-256");
  check(key != nullptr, "EVP_EC_gen");
  X509* x = X509_new();
  X509_set_version(x, 2);
  static std::atomic<long> serial{1};
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), static_cast<long>(days) * 86400);
  X509_set_pubkey(x, key);
  X509_NAME* subject = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(names[0].c_str()), -1, -1, 0);
  X509_set_issuer_name(x, subject);  // self-signed
  std::string san;
  for (const auto& n : names) {
    if (!san.empty()) san += ',';
    san += (is_ip(n) ? "IP:" : "DNS:") + n;
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_subject_alt_name, san},
                            std::pair{NID_basic_constraints, std::string("critical,CA:TRUE")}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    check(ext != nullptr, "extension");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  check(X509_sign(x, key, EVP_sha256()) > 0, "X509_sign");
  certificate c;
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, x);
  c.cert_pem = bio_string(b);
  BIO_free(b);
  b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  c.key_pem = bio_string(b);
  BIO_free(b);
  X509_free(x);
  EVP_PKEY_free(key);
  return c;
}

std::string certificate::cert_file() {
  const char* tmp = std::getenv("TMPDIR");
  std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/spindle-test-cert-XXXXXX";
  const int fd = ::mkstemp(path.data());
  check(fd >= 0, "mkstemp");
  const bool ok = ::write(fd, cert_pem.data(), cert_pem.size()) == static_cast<ssize_t>(cert_pem.size());
  ::close(fd);
  check(ok, "write");
  files_.push_back(path);
  return path;
}

certificate::~certificate() {
  for (const auto& f : files_) std::remove(f.c_str());
}

}  // namespace spindle::test
