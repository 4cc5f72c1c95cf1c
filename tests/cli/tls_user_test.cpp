// `spindle fetch --cacert/--capath/--cert/--key/--user` end to end (issue
// #16 point 8): the binary as a child process against spindle's own
// http::server with TLS on 127.0.0.1, certificates made at run time.

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "cli_support.hpp"
#include "spindle/http/background_server.hpp"
#include "spindle/net/tls.hpp"
#include "support/tls_certs.hpp"

namespace {

using namespace std::chrono_literals;
using namespace spindle::cli_test;
namespace http = spindle::http;

// Runs `spindle args...` (bounded: 60 s, then killed and failed).
run_result run60(const temp_dir& dir, const std::vector<std::string>& args) {
  return run(dir, args, {}, 60s);
}

json only_result(const run_result& r) {
  const std::vector<json> all = lines_of(r.out);
  EXPECT_EQ(all.size(), 1u) << r.out << r.err;
  return all.empty() ? json::object() : all.front();
}

// Answers every request with the Authorization it got ("-" for none); GET
// /elsewhere redirects to `elsewhere` (another origin).
http::handler echo_authorization(std::string elsewhere = {}) {
  return [elsewhere](http::request& req) -> spindle::task<http::response> {
    http::response r;
    r.status = 200;
    if (req.target == "/elsewhere") {
      r.status = 302;
      r.headers.set("Location", elsewhere);
      co_return r;
    }
    r.body = req.headers.get("Authorization").value_or("-");
    co_return r;
  };
}

// An https server on 127.0.0.1 with `cert`, asking for a client
// certificate signed by `client_ca` when given.
http::background_server tls_server(const spindle::test::certificate& cert,
                                   const std::string& client_ca = {}) {
  spindle::net::tls_server_options so;
  so.certificate_pem = cert.cert_pem;
  so.key_pem = cert.key_pem;
  so.client_ca_file = client_ca;
  http::background_server_options bo;
  bo.server.tls = spindle::net::tls_context::server(so);
  return http::background_server(echo_authorization(), bo);
}

TEST(CliTls, CacertTrustsAPrivateCaAndTheSystemStoreDoesNot) {
  temp_dir dir;
  spindle::test::certificate cert = spindle::test::self_signed({"localhost", "127.0.0.1"});
  http::background_server srv = tls_server(cert);
  const std::string url = "https://127.0.0.1:" + std::to_string(srv.port()) + "/";
  const json refused = only_result(run60(dir, {"fetch", "-q", "--retries", "0", url}));
  EXPECT_EQ(refused["error"]["kind"], "tls") << refused;
  const json trusted = only_result(run60(dir, {"fetch", "-q", "--cacert", cert.cert_file(), url}));
  EXPECT_EQ(trusted["ok"], true) << trusted;
  // A --cacert that cannot be read is a usage error before anything starts.
  const run_result bad = run60(dir, {"fetch", "-q", "--cacert", dir.file("missing.pem"), url});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("missing.pem"), std::string::npos) << bad.err;
  EXPECT_EQ(bad.out, "");
}

TEST(CliTls, CapathTrustsAHashedDirectory) {
  temp_dir dir;
  spindle::test::certificate cert = spindle::test::self_signed({"localhost", "127.0.0.1"});
  http::background_server srv = tls_server(cert);
  BIO* bio = BIO_new_mem_buf(cert.cert_pem.data(), static_cast<int>(cert.cert_pem.size()));
  X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(x, nullptr);
  char name[16];
  std::snprintf(name, sizeof name, "%08lx.0", X509_subject_name_hash(x));
  X509_free(x);
  std::filesystem::create_directory(dir.file("cas"));
  write_file(dir.file("cas/") + name, cert.cert_pem);
  const std::string url = "https://127.0.0.1:" + std::to_string(srv.port()) + "/";
  const json trusted = only_result(run60(dir, {"fetch", "-q", "--capath", dir.file("cas"), url}));
  EXPECT_EQ(trusted["ok"], true) << trusted;
}

TEST(CliTls, ClientCertificateForAServerThatAsksForOne) {
  temp_dir dir;
  spindle::test::certificate cert = spindle::test::self_signed({"localhost", "127.0.0.1"});
  spindle::test::certificate client = spindle::test::self_signed({"spindle test client"});
  http::background_server srv = tls_server(cert, client.cert_file());
  write_file(dir.file("client.key"), client.key_pem);
  const std::string url = "https://127.0.0.1:" + std::to_string(srv.port()) + "/";
  const json without =
      only_result(run60(dir, {"fetch", "-q", "--retries", "0", "--cacert", cert.cert_file(), url}));
  EXPECT_EQ(without["ok"], false) << without;
  const json with = only_result(run60(dir, {"fetch", "-q", "--cacert", cert.cert_file(), "--cert",
                                            client.cert_file(), "--key", dir.file("client.key"), url}));
  EXPECT_EQ(with["ok"], true) << with;
  const run_result key_only =
      run60(dir, {"fetch", "-q", "--cacert", cert.cert_file(), "--key", dir.file("client.key"), url});
  EXPECT_EQ(key_only.exit_code, 2) << key_only.err;
}

// --user: Basic credentials to the inputs' origin, never across a redirect
// to another origin (RFC 9110 §11.6.2 and curl's rule).
TEST(CliUser, BasicCredentialsStayWithTheirOrigin) {
  temp_dir dir;
  http::background_server other(echo_authorization());
  http::background_server first(echo_authorization(other.base_url() + "/"));
  const json direct =
      only_result(run60(dir, {"fetch", "-q", "--body", "--user", "ann:s3cret", first.base_url() + "/"}));
  EXPECT_EQ(direct["ok"], true) << direct;
  EXPECT_EQ(direct["body"], "Basic YW5uOnMzY3JldA==") << direct;
  const json moved = only_result(
      run60(dir, {"fetch", "-q", "--body", "--user", "ann:s3cret", first.base_url() + "/elsewhere"}));
  EXPECT_EQ(moved["ok"], true) << moved;
  EXPECT_EQ(moved["body"], "-") << "credentials followed a redirect to another origin: " << moved;
  const run_result no_password = run60(dir, {"fetch", "-q", "--user", "ann", first.base_url() + "/"});
  EXPECT_EQ(no_password.exit_code, 2) << no_password.err;
  EXPECT_NE(no_password.err.find("USER:PASSWORD"), std::string::npos) << no_password.err;
}

}  // namespace

namespace {

// --include-headers: the last response's fields in each result, in order,
// repeats kept (two Set-Cookie fields stay two), also for an error status;
// without the flag, no "headers" key.
TEST(CliHeaders, IncludeHeadersKeepsOrderAndRepeats) {
  temp_dir dir;
  http::background_server srv([](http::request& req) -> spindle::task<http::response> {
    http::response r;
    r.status = req.target == "/missing" ? 404 : 200;
    r.headers.add("Set-Cookie", "a=1");
    r.headers.add("X-Trace", "t\"q");
    r.headers.add("Set-Cookie", "b=2");
    r.body = "x";
    co_return r;
  });
  const json ok = only_result(run60(dir, {"fetch", "-q", "--include-headers", srv.base_url() + "/"}));
  ASSERT_TRUE(ok.contains("headers")) << ok;
  std::vector<std::pair<std::string, std::string>> got;
  for (const auto& f : ok["headers"]) got.emplace_back(f[0].get<std::string>(), f[1].get<std::string>());
  const std::vector<std::pair<std::string, std::string>> sent{
      {"Set-Cookie", "a=1"}, {"X-Trace", "t\"q"}, {"Set-Cookie", "b=2"}};
  ASSERT_GE(got.size(), sent.size()) << ok;
  EXPECT_TRUE(std::equal(sent.begin(), sent.end(), got.begin())) << ok;
  const json missing =
      only_result(run60(dir, {"fetch", "-q", "--retries", "0", "-i", srv.base_url() + "/missing"}));
  EXPECT_EQ(missing["status"], 404) << missing;
  EXPECT_TRUE(missing.contains("headers")) << missing;
  const json plain = only_result(run60(dir, {"fetch", "-q", srv.base_url() + "/"}));
  EXPECT_FALSE(plain.contains("headers")) << plain;
}

}  // namespace
