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

static_assert(detail::error_kind_names.size() == static_cast<std::size_t>(error_kind::http_status) + 1,
              "every error_kind has a name");

error_kind error_kind_of(const std::exception_ptr& e) noexcept {
  if (!e) return error_kind::exception;
  try {
    std::rethrow_exception(e);
  } catch (const spindle::error& x) {
    return x.kind_id();
  } catch (...) {
    return error_kind::exception;
  }
}

system_error::system_error(const std::string& what_call, int errno_value)
    : error(what_call + ": " + errno_text(errno_value)), code_(errno_value) {}

}  // namespace spindle
