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

std::string describe_duration(duration d) {
  if (d == duration::max()) return "forever";
  const double ms = std::chrono::duration<double, std::milli>(d).count();
  char buf[64];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%g ms", ms);
  } else {
    std::snprintf(buf, sizeof buf, "%g s", ms / 1000);
  }
  return buf;
}

std::string describe_task(const std::string& name, const std::source_location& where) {
  if (!name.empty()) return name;
  if (where.file_name() == nullptr || where.file_name()[0] == '\0') return "?";
  std::string file = where.file_name();
  // Keep the tail of the path: enough to find it, short enough to grep.
  if (auto slash = file.rfind('/'); slash != std::string::npos) file.erase(0, slash + 1);
  return file + ":" + std::to_string(where.line());
}

std::string readable_function_name(std::string_view pretty) {
  // Template parameters: g++'s " [with T = ...]", clang's " [T = ...]".
  if (pretty.ends_with(']')) {
    for (std::size_t at = pretty.find(" ["); at != std::string_view::npos; at = pretty.find(" [", at + 1)) {
      if (pretty.find(" = ", at) != std::string_view::npos) {
        pretty = pretty.substr(0, at);
        break;
      }
    }
  }
  // Template arguments out ("operator<" and "operator<<" kept); clang's
  // "(anonymous namespace)" spelled as g++'s "{anonymous}".
  std::string spelled(pretty);
  for (std::size_t at; (at = spelled.find("(anonymous namespace)")) != std::string::npos;)
    spelled.replace(at, 21, "{anonymous}");
  pretty = spelled;
  std::string s;
  s.reserve(pretty.size());
  int angle = 0;
  for (std::size_t i = 0; i < pretty.size(); ++i) {
    const char c = pretty[i];
    if (c == '<' && angle == 0 && s.ends_with("operator")) {
      s += c;
      if (i + 1 < pretty.size() && pretty[i + 1] == '<') s += pretty[++i];
      continue;
    }
    if (c == '<') {
      // A lambda: "f()::<lambda(int)>" keeps a word for it.
      if (angle == 0 && pretty.substr(i).starts_with("<lambda")) s += "lambda";
      ++angle;
    } else if (c == '>' && angle > 0) {
      --angle;
    } else if (angle == 0) {
      s += c;
    }
  }
  // The function's own parameters: the last top-level "(...)"; a lambda's
  // enclosing function keeps its "()" only as part of the qualified name.
  std::size_t end = s.size();
  while (end > 0 && s[end - 1] != ')') --end;               // " const", " noexcept", "&&"
  if (end > 0 && s.find("::", end) == std::string::npos) {  // (not "f()::lambda")
    int depth = 0;
    std::size_t open = end;
    for (std::size_t i = end; i-- > 0;) {
      if (s[i] == ')') ++depth;
      if (s[i] == '(' && --depth == 0) {
        open = i;
        break;
      }
    }
    if (open < end && !s.substr(0, open).ends_with("lambda")) s.erase(open);
  }
  // The return type: everything before the last top-level space.
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '(') ++depth;
    if (s[i] == ')') --depth;
    if (s[i] == ' ' && depth == 0) start = i + 1;
  }
  s.erase(0, start);
  // Parameter lists left inside the qualified name ("main()::lambda").
  std::string out;
  depth = 0;
  for (char c : s) {
    if (c == '(') ++depth;
    if (depth == 0) out += c;
    if (c == ')' && depth > 0) --depth;
  }
  return out.empty() ? std::string(pretty) : out;
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
