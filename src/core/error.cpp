#include "spindle/error.hpp"

#include <cstring>

namespace spindle {

namespace {
std::string errno_text(int e) {
  char buf[256];
  // GNU strerror_r returns the message pointer (maybe not buf).
  const char* msg = strerror_r(e, buf, sizeof buf);
  return msg;
}
}  // namespace

system_error::system_error(const std::string& what_call, int errno_value)
    : error(what_call + ": " + errno_text(errno_value)), code_(errno_value) {}

}  // namespace spindle
