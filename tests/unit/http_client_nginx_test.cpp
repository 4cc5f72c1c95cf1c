// The HTTP client against a real nginx (Debian's nginx-light, installed by
// scripts/install-deps.sh build), started by the test on two loopback ports
// (two origins): gzip from a real server, 304 and HEAD without bodies on a
// reused connection, redirects that nginx makes, and credentials that stay
// at their origin. A missing nginx fails the tests: they are not skipped.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "spindle/event_loop.hpp"
#include "spindle/http/client.hpp"

extern char** environ;

namespace spindle::http {
namespace {

using namespace std::chrono_literals;

// A free loopback port (bound, then released: nginx takes it a moment later).
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool port_open(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// One nginx process (master_process off) on two ports, in a temporary
// directory; stopped (SIGTERM, then SIGKILL) by the destructor.
class nginx_server {
 public:
  nginx_server()
      : dir_(std::filesystem::temp_directory_path() / ("spindle-nginx-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(dir_ / "tmp");
    std::filesystem::create_directories(dir_ / "www");
    for (int i = 0; i < 4000; ++i) text_ += "line " + std::to_string(i) + " of a compressible file\n";
    std::ofstream(dir_ / "www" / "big.txt") << text_;
    a_ = free_port();
    b_ = free_port();
    const std::string d = dir_.string();
    std::ofstream conf(dir_ / "nginx.conf");
    conf << "daemon off;\nmaster_process off;\nworker_processes 1;\npid " << d << "/nginx.pid;\n"
         << "error_log " << d << "/error.log warn;\nevents { worker_connections 256; }\n"
         << "http {\n  access_log off;\n  types { text/plain txt; }\n  default_type text/plain;\n"
         << "  client_body_temp_path " << d << "/tmp/cb; proxy_temp_path " << d << "/tmp/p;\n"
         << "  fastcgi_temp_path " << d << "/tmp/f; uwsgi_temp_path " << d << "/tmp/u; scgi_temp_path " << d
         << "/tmp/s;\n"
         << "  gzip on; gzip_types text/plain; gzip_min_length 1;\n"
         << "  server {\n    listen 127.0.0.1:" << a_ << ";\n    root " << d << "/www;\n"
         << "    location = /moved { return 301 /big.txt; }\n"
         << "    location = /to-self { return 302 /echo; }\n"
         << "    location = /to-other { return 307 http://127.0.0.1:" << b_ << "/echo; }\n"
         << "    location = /echo { return 200 \"auth=[$http_authorization] cookie=[$http_cookie]\"; }\n"
         << "    location = /empty { return 204; }\n  }\n"
         << "  server {\n    listen 127.0.0.1:" << b_ << ";\n"
         << "    location = /echo { return 200 \"auth=[$http_authorization] cookie=[$http_cookie]\"; }\n  }\n"
         << "}\n";
    conf.close();
    std::string program = "/usr/sbin/nginx";
    std::string p = "-p", pv = d + "/", c = "-c", cv = d + "/nginx.conf", e = "-e", ev = d + "/error.log";
    char* argv[] = {program.data(), p.data(), pv.data(), c.data(), cv.data(), e.data(), ev.data(), nullptr};
    if (::posix_spawn(&pid_, program.c_str(), nullptr, nullptr, argv, environ) != 0) pid_ = -1;
    for (int i = 0; i < 200 && pid_ > 0 && !(port_open(a_) && port_open(b_)); ++i)
      std::this_thread::sleep_for(25ms);
  }
  ~nginx_server() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 200 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(10ms);
      if (::waitpid(pid_, &status, WNOHANG) == 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  nginx_server(const nginx_server&) = delete;
  nginx_server& operator=(const nginx_server&) = delete;

  [[nodiscard]] bool running() const { return pid_ > 0 && port_open(a_) && port_open(b_); }
  [[nodiscard]] std::string a() const { return "http://127.0.0.1:" + std::to_string(a_); }
  [[nodiscard]] std::string b() const { return "http://127.0.0.1:" + std::to_string(b_); }
  [[nodiscard]] const std::string& text() const { return text_; }

 private:
  std::filesystem::path dir_;
  std::string text_;
  std::uint16_t a_ = 0, b_ = 0;
  pid_t pid_ = -1;
};

nginx_server& nginx() {
  static nginx_server server;
  EXPECT_TRUE(server.running())
      << "nginx did not start (apt-get install nginx-light: scripts/install-deps.sh)";
  return server;
}

void on_loop(const std::function<task<void>()>& body) {
  event_loop loop;
  loop.run(body());
}

TEST(ClientNginx, GzipFromARealServerIsDecodedAndConditionalAndHeadResponsesHaveNoBody) {
  nginx_server& ng = nginx();
  ASSERT_TRUE(ng.running());
  on_loop([&]() -> task<void> {
    client c;
    response full = co_await c.get(ng.a() + "/big.txt");
    EXPECT_EQ(full.status, 200);
    EXPECT_EQ(full.body, ng.text());
    EXPECT_FALSE(full.headers.contains("Content-Encoding"));  // decoded
    EXPECT_LT(full.wire_body_bytes, ng.text().size() / 4);    // it came compressed
    const std::string etag(full.headers.get("ETag").value_or(""));
    EXPECT_FALSE(etag.empty());
    headers conditional;
    conditional.add("If-None-Match", etag);
    response not_modified = co_await c.send("GET", ng.a() + "/big.txt", std::move(conditional));
    EXPECT_EQ(not_modified.status, 304);
    EXPECT_EQ(not_modified.body, "");
    response head = co_await c.send("HEAD", ng.a() + "/big.txt");
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.body, "");
    response empty = co_await c.get(ng.a() + "/empty");
    EXPECT_EQ(empty.status, 204);
    response again = co_await c.get(ng.a() + "/big.txt");
    EXPECT_EQ(again.body, ng.text());
    EXPECT_EQ(c.statistics().created, 1u);  // every response left the connection clean
  });
}

TEST(ClientNginx, RedirectsKeepCredentialsAtTheirOrigin) {
  nginx_server& ng = nginx();
  ASSERT_TRUE(ng.running());
  on_loop([&]() -> task<void> {
    client_options o;
    o.max_redirects = 5;
    client c(o);
    response moved = co_await c.get(ng.a() + "/moved");
    EXPECT_EQ(moved.status, 200);
    EXPECT_EQ(moved.url, ng.a() + "/big.txt");
    EXPECT_EQ(moved.body, ng.text());
    headers h1;
    h1.add("Authorization", "Bearer t0ken");
    h1.add("Cookie", "sid=42");
    response same = co_await c.send("GET", ng.a() + "/to-self", std::move(h1));
    EXPECT_EQ(same.body, "auth=[Bearer t0ken] cookie=[sid=42]");
    headers h2;
    h2.add("Authorization", "Bearer t0ken");
    h2.add("Cookie", "sid=42");
    response other = co_await c.send("GET", ng.a() + "/to-other", std::move(h2));
    EXPECT_EQ(other.url, ng.b() + "/echo");
    EXPECT_EQ(other.body, "auth=[] cookie=[]");
  });
}

}  // namespace
}  // namespace spindle::http
