#pragma once
// Throwaway certificates for TLS tests, made with OpenSSL at run time (no
// key material in the repository).

#include <string>
#include <vector>

namespace spindle::test {

struct certificate {
  std::string cert_pem;
  std::string key_pem;
  /// Writes the certificate to a file in the temporary directory (deleted
  /// with the object) and returns its path, for tls_client_options::ca_file.
  std::string cert_file();
  certificate() = default;
  certificate(certificate&&) = default;
  certificate& operator=(certificate&&) = default;
  certificate(const certificate&) = delete;
  certificate& operator=(const certificate&) = delete;
  ~certificate();

 private:
  std::vector<std::string> files_;
};

/// A self-signed EC P-256 certificate for `names` (DNS names and IP
/// literals become subjectAltNames; the first is also the CN), valid from
/// an hour ago for `days` days (a negative value: already expired).
certificate self_signed(const std::vector<std::string>& names, int days = 1);

}  // namespace spindle::test
