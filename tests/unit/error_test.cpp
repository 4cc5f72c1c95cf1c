#include "spindle/error.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <set>
#include <stdexcept>
#include <string>

#include "spindle/channel.hpp"
#include "spindle/http/client.hpp"
#include "spindle/http/errors.hpp"
#include "spindle/http/fetch.hpp"
#include "spindle/net/errors.hpp"
#include "spindle/outcome.hpp"
#include "spindle/retry.hpp"
#include "spindle/task_group.hpp"
#include "spindle/thread_pool.hpp"

namespace spindle {
namespace {

SPINDLE_DEFINE_APP_ERROR(database_error, "database");

TEST(Error, KindsAreStable) {
  EXPECT_STREQ(cancelled_error().kind(), "cancelled");
  EXPECT_STREQ(timeout_error("t").kind(), "timeout");
  EXPECT_STREQ(wrong_thread_error("w").kind(), "wrong_thread");
  EXPECT_STREQ(loop_running_error("l").kind(), "loop_running");
  EXPECT_STREQ(shutdown_error("s").kind(), "shutdown");
  EXPECT_STREQ(usage_error("u").kind(), "usage");
  EXPECT_STREQ(system_error("open", ENOENT).kind(), "system");
}

TEST(Error, AllDeriveFromSpindleError) {
  try {
    throw timeout_error("deadline passed");
  } catch (const error& e) {
    EXPECT_STREQ(e.kind(), "timeout");
    EXPECT_STREQ(e.what(), "deadline passed");
  }
}

TEST(Error, SystemErrorCarriesCallAndErrnoText) {
  system_error e("open(/nope)", ENOENT);
  EXPECT_EQ(e.code(), ENOENT);
  EXPECT_NE(std::string(e.what()).find("open(/nope): No such file or directory"), std::string::npos);
}

// The registry: one stable name per kind, names unique, lookups round-trip,
// and the names are exactly the strings kind() has always returned (the
// CLI's JSON and users' retry predicates depend on them).
TEST(ErrorKindRegistry, NamesAreUniqueAndRoundTrip) {
  std::set<std::string> seen;
  for (error_kind k : all_error_kinds()) {
    const std::string name(error_kind_name(k));
    EXPECT_FALSE(name.empty());
    EXPECT_TRUE(seen.insert(name).second) << "duplicate name " << name;
    const auto back = error_kind_from_name(name);
    ASSERT_TRUE(back.has_value()) << name;
    EXPECT_EQ(*back, k);
  }
  EXPECT_EQ(seen.size(), all_error_kinds().size());
  EXPECT_FALSE(error_kind_from_name("Timeout").has_value());  // names are exact
  EXPECT_FALSE(error_kind_from_name("").has_value());
}

TEST(ErrorKindRegistry, EveryErrorClassReportsItsRegisteredKind) {
  struct row {
    std::exception_ptr e;
    error_kind kind;
    const char* name;
  };
  const row rows[] = {
      {std::make_exception_ptr(cancelled_error()), error_kind::cancelled, "cancelled"},
      {std::make_exception_ptr(timeout_error("t")), error_kind::timeout, "timeout"},
      {std::make_exception_ptr(wrong_thread_error("w")), error_kind::wrong_thread, "wrong_thread"},
      {std::make_exception_ptr(loop_running_error("l")), error_kind::loop_running, "loop_running"},
      {std::make_exception_ptr(shutdown_error("s")), error_kind::shutdown, "shutdown"},
      {std::make_exception_ptr(usage_error("u")), error_kind::usage, "usage"},
      {std::make_exception_ptr(system_error("open", ENOENT)), error_kind::system, "system"},
      {std::make_exception_ptr(rejected_error("r")), error_kind::rejected, "rejected"},
      {std::make_exception_ptr(channel_closed_error("c")), error_kind::closed, "closed"},
      {std::make_exception_ptr(task_group_error(
           {std::make_exception_ptr(timeout_error("a")), std::make_exception_ptr(timeout_error("b"))})),
       error_kind::group, "group"},
      {std::make_exception_ptr(net::dns_error("d")), error_kind::dns, "dns"},
      {std::make_exception_ptr(net::connect_error("c")), error_kind::connect, "connect"},
      {std::make_exception_ptr(net::connection_error("c")), error_kind::connect, "connect"},
      {std::make_exception_ptr(net::tls_error("t")), error_kind::tls, "tls"},
      {std::make_exception_ptr(http::invalid_url_error("u")), error_kind::invalid_url, "invalid_url"},
      {std::make_exception_ptr(http::protocol_error("p")), error_kind::protocol, "protocol"},
      {std::make_exception_ptr(http::redirect_error("r")), error_kind::redirect, "redirect"},
      {std::make_exception_ptr(http::http_status_error(503, "busy", std::nullopt)), error_kind::http_status,
       "http_status"},
      {std::make_exception_ptr(std::runtime_error("plain")), error_kind::exception, "exception"},
      {std::make_exception_ptr(database_error("down")), error_kind::application, "database"},
  };
  for (const auto& r : rows) {
    EXPECT_EQ(error_kind_of(r.e), r.kind) << r.name;
    if (r.kind != error_kind::application) {
      EXPECT_EQ(error_kind_name(error_kind_of(r.e)), r.name);
    }
    const outcome<int> o(r.e);
    EXPECT_EQ(o.kind_id(), r.kind);
    EXPECT_EQ(o.error_kind(), r.name);
  }
  EXPECT_EQ(error_kind_of(nullptr), error_kind::exception);
  EXPECT_EQ(outcome<int>(1).error_kind(), "");
}

TEST(ErrorKindRegistry, RetryPredicatesUseTheRegistry) {
  const auto by_name = retry_on_kinds(std::vector<std::string>{"timeout", "dns"});
  const auto by_id = retry_on_kinds(std::vector<error_kind>{error_kind::timeout, error_kind::dns});
  for (const auto& pred : {by_name, by_id}) {
    EXPECT_TRUE(pred(std::make_exception_ptr(timeout_error("t"))));
    EXPECT_TRUE(pred(std::make_exception_ptr(net::dns_error("d"))));
    EXPECT_FALSE(pred(std::make_exception_ptr(net::connect_error("c"))));
    EXPECT_FALSE(pred(std::make_exception_ptr(std::runtime_error("x"))));
  }
  // A typo must not silently mean "never retry".
  EXPECT_THROW((void)retry_on_kinds(std::vector<std::string>{"timout"}), usage_error);
}

// The fetch engine (and so the CLI's JSON "kind") reports only registered
// names, and folds kinds it does not report into "rejected" naming them.
TEST(ErrorKindRegistry, FetchKindsAreRegisteredNames) {
  for (std::string_view k : http::fetch_error_kinds()) EXPECT_TRUE(error_kind_from_name(k).has_value()) << k;
  std::string message;
  EXPECT_EQ(http::fetch_error_kind(std::make_exception_ptr(net::tls_error("bad cert")), message), "tls");
  EXPECT_EQ(message, "bad cert");
  EXPECT_EQ(http::fetch_error_kind(std::make_exception_ptr(usage_error("oops")), message), "rejected");
  EXPECT_EQ(message, "usage: oops");
  EXPECT_EQ(http::fetch_error_kind(std::make_exception_ptr(database_error("down")), message), "rejected");
  EXPECT_EQ(message, "database: down");
}

}  // namespace
}  // namespace spindle
