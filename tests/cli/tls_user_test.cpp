// `spindle fetch --cacert/--capath/--cert/--key/--user` end to end (issue
// #16 point 8): the binary as a child process against spindle's own
// http::server with TLS on 127.0.0.1, certificates made at run time.

#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "spindle/http/background_server.hpp"
#include "spindle/net/tls.hpp"
#include "support/tls_certs.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
namespace http = spindle::http;

struct run_result {
  int exit_code = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class temp_dir {
 public:
  temp_dir() {
    char tmpl[] = "/tmp/spindle-tls-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~temp_dir() { std::filesystem::remove_all(path_); }
  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

// Runs `spindle args...` (bounded: 60 s, then killed and failed).
run_result run(const temp_dir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), SPINDLE_CLI_PATH);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, dir.file("stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, dir.file("stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  EXPECT_EQ(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  run_result r;
  int status = 0;
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (::waitpid(pid, &status, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() > until) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      ADD_FAILURE() << "spindle did not finish within 60 s";
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(dir.file("stdout"));
  r.err = slurp(dir.file("stderr"));
  return r;
}

json only_result(const run_result& r) {
  std::istringstream in(r.out);
  std::string line;
  std::vector<json> all;
  while (std::getline(in, line)) all.push_back(json::parse(line));
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
  const json refused = only_result(run(dir, {"fetch", "-q", "--retries", "0", url}));
  EXPECT_EQ(refused["error"]["kind"], "tls") << refused;
  const json trusted = only_result(run(dir, {"fetch", "-q", "--cacert", cert.cert_file(), url}));
  EXPECT_EQ(trusted["ok"], true) << trusted;
  // A --cacert that cannot be read is a usage error before anything starts.
  const run_result bad = run(dir, {"fetch", "-q", "--cacert", dir.file("missing.pem"), url});
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
  const json trusted = only_result(run(dir, {"fetch", "-q", "--capath", dir.file("cas"), url}));
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
      only_result(run(dir, {"fetch", "-q", "--retries", "0", "--cacert", cert.cert_file(), url}));
  EXPECT_EQ(without["ok"], false) << without;
  const json with = only_result(run(dir, {"fetch", "-q", "--cacert", cert.cert_file(), "--cert",
                                          client.cert_file(), "--key", dir.file("client.key"), url}));
  EXPECT_EQ(with["ok"], true) << with;
  const run_result key_only =
      run(dir, {"fetch", "-q", "--cacert", cert.cert_file(), "--key", dir.file("client.key"), url});
  EXPECT_EQ(key_only.exit_code, 2) << key_only.err;
}

// --user: Basic credentials to the inputs' origin, never across a redirect
// to another origin (RFC 9110 §11.6.2 and curl's rule).
TEST(CliUser, BasicCredentialsStayWithTheirOrigin) {
  temp_dir dir;
  http::background_server other(echo_authorization());
  http::background_server first(echo_authorization(other.base_url() + "/"));
  const json direct =
      only_result(run(dir, {"fetch", "-q", "--body", "--user", "ann:s3cret", first.base_url() + "/"}));
  EXPECT_EQ(direct["ok"], true) << direct;
  EXPECT_EQ(direct["body"], "Basic YW5uOnMzY3JldA==") << direct;
  const json moved = only_result(
      run(dir, {"fetch", "-q", "--body", "--user", "ann:s3cret", first.base_url() + "/elsewhere"}));
  EXPECT_EQ(moved["ok"], true) << moved;
  EXPECT_EQ(moved["body"], "-") << "credentials followed a redirect to another origin: " << moved;
  const run_result no_password = run(dir, {"fetch", "-q", "--user", "ann", first.base_url() + "/"});
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
  const json ok = only_result(run(dir, {"fetch", "-q", "--include-headers", srv.base_url() + "/"}));
  ASSERT_TRUE(ok.contains("headers")) << ok;
  std::vector<std::pair<std::string, std::string>> got;
  for (const auto& f : ok["headers"]) got.emplace_back(f[0].get<std::string>(), f[1].get<std::string>());
  const std::vector<std::pair<std::string, std::string>> sent{
      {"Set-Cookie", "a=1"}, {"X-Trace", "t\"q"}, {"Set-Cookie", "b=2"}};
  ASSERT_GE(got.size(), sent.size()) << ok;
  EXPECT_TRUE(std::equal(sent.begin(), sent.end(), got.begin())) << ok;
  const json missing =
      only_result(run(dir, {"fetch", "-q", "--retries", "0", "-i", srv.base_url() + "/missing"}));
  EXPECT_EQ(missing["status"], 404) << missing;
  EXPECT_TRUE(missing.contains("headers")) << missing;
  const json plain = only_result(run(dir, {"fetch", "-q", srv.base_url() + "/"}));
  EXPECT_FALSE(plain.contains("headers")) << plain;
}

}  // namespace
