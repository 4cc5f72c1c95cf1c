#include "spindle/error.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace spindle {
namespace {

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

}  // namespace
}  // namespace spindle
