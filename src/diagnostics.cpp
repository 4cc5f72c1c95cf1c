#include "spindle/diagnostics.hpp"

#include <cstdio>

namespace spindle {

const char* to_string(diagnostic::kind k) noexcept {
  switch (k) {
    case diagnostic::kind::unobserved_failure: return "unobserved_failure";
    case diagnostic::kind::callback_failure: return "callback_failure";
    case diagnostic::kind::abandoned_task: return "abandoned_task";
    case diagnostic::kind::dropped_callback: return "dropped_callback";
  }
  return "unknown";
}

std::string describe_task(const std::string& name, const std::source_location& where) {
  if (!name.empty()) return name;
  if (where.file_name() == nullptr || where.file_name()[0] == '\0') return "?";
  std::string file = where.file_name();
  // Keep the tail of the path: enough to find it, short enough to grep.
  if (auto slash = file.rfind('/'); slash != std::string::npos) file.erase(0, slash + 1);
  return file + ":" + std::to_string(where.line());
}

std::string format_line(const diagnostic& d) {
  std::string line = "spindle: loop=" + d.loop + " event=" + to_string(d.what);
  if (!d.task.empty() || d.where.line() != 0) line += " task=" + describe_task(d.task, d.where);
  if (!d.message.empty()) line += " " + d.message;
  return line;
}

void write_to_stderr(const diagnostic& d) noexcept {
  try {
    std::string line = format_line(d);
    line += '\n';
    std::fputs(line.c_str(), stderr);
  } catch (...) {
    std::fputs("spindle: diagnostic could not be formatted\n", stderr);
  }
}

}  // namespace spindle
