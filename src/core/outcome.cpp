#include "spindle/outcome.hpp"

#include "spindle/error.hpp"

namespace spindle::detail {

std::string error_kind_name_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const spindle::error& x) {
    return x.kind();
  } catch (...) {
    return std::string(error_kind_name(error_kind::exception));
  }
}

std::string error_message(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace spindle::detail
