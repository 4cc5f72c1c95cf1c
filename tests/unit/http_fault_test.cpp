// The HTTP client against every fault of the fault-injection server: the
// exact error kind, no reuse of a connection after a fault, no leaked
// descriptor.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "spindle/event_loop.hpp"
#include "spindle/http/client.hpp"
#include "spindle/sleep.hpp"
#include "support/fault_server.hpp"
#include "support/test_support.hpp"

namespace spindle::http {
namespace {

using namespace std::chrono_literals;

// One server for the whole suite (its thread and certificates are reused),
// warmed up by one request so that descriptors it opens lazily on its first
// use are not counted against the test that happens to come first.
test::fault_server& server() {
  static test::fault_server s;
  static const bool warm = [] {
    event_loop loop;
    auto once = [&]() -> task<bool> {
      client c;
      response r = co_await c.get(s.base_url() + "/ok");
      co_return r.status == 200;
    };
    const bool ok = loop.run(once());
    return s.wait_open_connections_at_most(0, std::chrono::milliseconds(5000)) && ok;
  }();
  EXPECT_TRUE(warm);
  return s;
}

struct outcome_text {
  std::string result;         // "ok 200 <body size>" or the error kind
  std::uint64_t created = 0;  // connections the client made for the request and a follow-up /ok
  bool follow_up_ok = false;
};

// Requests `path`, then /ok on the same client: the follow-up must work, and
// `created` shows whether the faulty connection was reused.
// (Options by pointer: a defaulted client_options argument makes g++ 12
// warn -Wmaybe-uninitialized about its strings.)
outcome_text run(const std::string& path, request_options ro = {}, const client_options* opts = nullptr) {
  const std::string base = server().base_url();
  // The server's side of earlier connections closes on its own thread:
  // count descriptors only when it has none open.
  EXPECT_TRUE(server().wait_open_connections_at_most(0, 5000ms));
  const int fds_before = test::open_fd_count();
  outcome_text out;
  {
    event_loop loop;
    auto main = [&]() -> task<void> {
      std::optional<client> holder;
      if (opts != nullptr) {
        holder.emplace(*opts);
      } else {
        holder.emplace();
      }
      client& c = *holder;
      try {
        response r = co_await c.get(base + path, ro);
        out.result = "ok " + std::to_string(r.status) + " " + std::to_string(r.body.size());
      } catch (const error& e) {
        out.result = e.kind();
      }
      response again = co_await c.get(base + "/ok");
      out.follow_up_ok = again.status == 200 && again.body == "ok";
      out.created = c.statistics().created;
    };
    loop.run(main());
  }
  EXPECT_TRUE(server().wait_open_connections_at_most(0, 5000ms));
  EXPECT_EQ(test::open_fd_count(), fds_before) << path;
  return out;
}

TEST(HttpFault, KeepAliveReusesOneConnection) {
  auto o = run("/ok");
  EXPECT_EQ(o.result, "ok 200 2");
  EXPECT_EQ(o.created, 1u);
  EXPECT_TRUE(o.follow_up_ok);
}

// Each fault: the exact kind, and a follow-up request on the same client
// that needs a new connection (created == 2: the faulty one was not reused),
// unless the HTTP framing itself was intact.
TEST(HttpFault, EachFaultHasItsKindAndItsConnectionIsNotReused) {
  struct fault {
    const char* path;
    const char* kind;
    request_options options;
    unsigned created = 2;
  };
  const fault faults[] = {
      {"/reset-headers", "connect", {}},
      {"/reset-body", "connect", {}},
      {"/wrong-length", "protocol", {}},
      {"/malformed-status", "protocol", {}},
      {"/huge-headers?kb=200", "protocol", {}},
      {"/bad-chunked", "protocol", {}},
      // The body is decoded as it arrives: a corrupt payload ends the
      // exchange before the rest of the body is read, so the connection
      // is not reused either.
      {"/gzip-corrupt", "protocol", {}},
      {"/trickle?interval_ms=20", "timeout", {.timeout = 300ms}},
      {"/delay?ms=2000", "timeout", {.timeout = 100ms}},
      {"/big?bytes=2000000", "protocol", {.max_response_bytes = 1'000'000}},
  };
  for (const fault& f : faults) {
    SCOPED_TRACE(f.path);
    auto o = run(f.path, f.options);
    EXPECT_EQ(o.result, f.kind);
    EXPECT_EQ(o.created, f.created);
    EXPECT_TRUE(o.follow_up_ok);
  }
}

TEST(HttpFault, SlowHeadersHitTheHeaderTimeout) {
  client_options opts;
  opts.header_timeout = 200ms;
  auto o = run("/slow-headers?interval_ms=50", {}, &opts);
  EXPECT_EQ(o.result, "timeout");
  EXPECT_EQ(o.created, 2u);
}

TEST(HttpFault, CloseDelimitedBodyIsReadToTheEndAndNotReused) {
  auto o = run("/close-delimited");
  EXPECT_EQ(o.result, "ok 200 " + std::to_string(test::fault_server::close_delimited_text().size()));
  EXPECT_EQ(o.created, 2u);
}

TEST(HttpFault, JunkAfterTheBodyMeansNoReuse) {
  auto o = run("/too-long-body");
  EXPECT_EQ(o.result, "ok 200 5");
  EXPECT_EQ(o.created, 2u);
}

TEST(HttpFault, GzipAndDeflateAreDecoded) {
  const std::string n = std::to_string(test::fault_server::gzip_text().size());
  EXPECT_EQ(run("/gzip").result, "ok 200 " + n);
  EXPECT_EQ(run("/deflate").result, "ok 200 " + n);
  EXPECT_EQ(run("/chunked").result, "ok 200 " + std::to_string(test::fault_server::chunked_text().size()));
}

TEST(HttpFault, StatusErrorsOnRequest) {
  EXPECT_EQ(run("/status?code=503&retry_after=3").result, "ok 503 10");
  EXPECT_EQ(run("/status?code=429&retry_after=3", {.throw_on_status = true}).result, "http_status");
}

TEST(HttpFault, RedirectsAreFollowedOnlyWhenAsked) {
  EXPECT_EQ(run("/redirect?n=3").result, "ok 302 8");
  EXPECT_EQ(run("/redirect?n=3", {.max_redirects = 5}).result, "ok 200 7");
  EXPECT_EQ(run("/redirect-loop", {.max_redirects = 3}).result, "redirect");
}

TEST(HttpFault, StaleKeptAliveConnectionIsDetected) {
  test::fault_server quick({.keep_alive_timeout = 50ms});
  event_loop loop;
  auto main = [&]() -> task<std::string> {
    client c;
    response a = co_await c.get(quick.base_url() + "/ok");
    co_await sleep_for(200ms);  // the server has closed the idle connection
    response b = co_await c.get(quick.base_url() + "/ok");
    co_return std::to_string(a.status) + " " + std::to_string(b.status) +
        " created=" + std::to_string(c.statistics().created);
  };
  EXPECT_EQ(loop.run(main()), "200 200 created=2");
}

TEST(HttpFault, TlsCertificateChecks) {
  test::fault_server good({.tls = true});
  test::fault_server wrong({.tls = true, .cert = test::fault_server_options::cert_kind::wrong_name});
  test::fault_server expired({.tls = true, .cert = test::fault_server_options::cert_kind::expired});
  auto tls_get = [](test::fault_server& s, bool pin, bool verify) {
    client_options o;
    if (pin) o.ca_file = s.ca_file();
    o.verify_tls = verify;
    event_loop loop;
    auto main = [&]() -> task<std::string> {
      client c(o);
      try {
        response r = co_await c.get(s.tls_base_url() + "/ok");
        co_return "ok " + r.body;
      } catch (const error& e) {
        co_return std::string(e.kind()) + ": " + e.what();
      }
    };
    return loop.run(main());
  };
  EXPECT_EQ(tls_get(good, true, true), "ok ok");
  EXPECT_EQ(tls_get(good, false, true).rfind("tls: ", 0), 0u);  // self-signed against the system store
  EXPECT_EQ(tls_get(good, false, false), "ok ok");              // --insecure
  EXPECT_NE(tls_get(wrong, true, true).find("hostname mismatch"), std::string::npos);
  EXPECT_NE(tls_get(expired, true, true).find("expired"), std::string::npos);
}

}  // namespace
}  // namespace spindle::http
