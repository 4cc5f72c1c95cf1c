#include "output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "spindle/error.hpp"

namespace spindle::cli {

namespace {

// Length of the UTF-8 sequence at s[i] (1..4), or 0 when it is invalid.
std::size_t utf8_length(std::string_view s, std::size_t i) noexcept {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  std::uint32_t cp = 0;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  // Overlong forms, surrogates, beyond U+10FFFF.
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    // The run of characters that need no escaping, appended at once.
    std::size_t j = i;
    while (j < s.size()) {
      const auto c = static_cast<unsigned char>(s[j]);
      if (c < 0x20 || c == '"' || c == '\\' || c >= 0x7F) break;
      ++j;
    }
    out.append(s.data() + i, j - i);
    i = j;
    if (i == s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::size_t n = utf8_length(s, i);
      if (n == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(s.data() + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 15];
    }
    ++i;
  }
  out += '"';
}

bool is_text(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    if (s[i] == '\0') return false;
    const std::size_t n = utf8_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string base64(std::string_view s) {
  static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((s.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    const std::uint32_t v = (static_cast<unsigned char>(s[i]) << 16) |
                            (static_cast<unsigned char>(s[i + 1]) << 8) |
                            static_cast<unsigned char>(s[i + 2]);
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += table[(v >> 6) & 63];
    out += table[v & 63];
  }
  if (i < s.size()) {
    std::uint32_t v = static_cast<unsigned char>(s[i]) << 16;
    if (i + 1 < s.size()) v |= static_cast<unsigned char>(s[i + 1]) << 8;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += i + 1 < s.size() ? table[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

namespace {
void append_number(std::string& out, std::uint64_t v) {
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, v);
  out.append(digits, static_cast<std::size_t>(end - digits));
}
}  // namespace

std::string progress_line(const progress_counts& c) {
  const std::uint64_t done = c.ok + c.failed;
  const double per_s = c.secs > 0 ? static_cast<double>(done) / c.secs : 0.0;
  char line[256];
  const std::uint64_t all = c.input_done ? c.read : c.total;
  if (all > 0 && done <= all) {
    const double frac = static_cast<double>(done) / static_cast<double>(all);
    char bar[25];
    const int filled = static_cast<int>(frac * 24);
    for (int i = 0; i < 24; ++i) bar[i] = i < filled ? '#' : '.';
    bar[24] = '\0';
    const double eta = per_s > 0 ? static_cast<double>(all - done) / per_s : 0.0;
    std::snprintf(line, sizeof line,
                  "\r\x1b[K[%s] %3.0f%% %llu/%llu ok=%llu failed=%llu %zu in flight %.1f/s %.1fs eta %.0fs",
                  bar, frac * 100, static_cast<unsigned long long>(done),
                  static_cast<unsigned long long>(all), static_cast<unsigned long long>(c.ok),
                  static_cast<unsigned long long>(c.failed), c.in_flight, per_s, c.secs, eta);
  } else {
    std::snprintf(line, sizeof line,
                  "\r\x1b[K%llu done ok=%llu failed=%llu %zu in flight %.1f/s %.1fs (reading input)",
                  static_cast<unsigned long long>(done), static_cast<unsigned long long>(c.ok),
                  static_cast<unsigned long long>(c.failed), c.in_flight, per_s, c.secs);
  }
  return line;
}

void append_millis(std::string& out, double ms) {
  if (!(ms >= 0) || ms >= 1e12) {  // (NaN, negative, absurd: the general algorithm)
    char num[64];
    auto [end, ec] = std::to_chars(num, num + sizeof num, ms, std::chars_format::fixed, 3);
    out.append(num, ec == std::errc{} ? static_cast<std::size_t>(end - num) : 0);
    return;
  }
  // Whole microseconds in integers: to_chars(double, fixed) costs ten times more.
  const auto us = static_cast<std::uint64_t>(std::llround(ms * 1000.0));
  append_number(out, us / 1000);
  const auto frac = static_cast<unsigned>(us % 1000);
  const char tail[4] = {'.', static_cast<char>('0' + frac / 100), static_cast<char>('0' + frac / 10 % 10),
                        static_cast<char>('0' + frac % 10)};
  out.append(tail, 4);
}

void append_result_line(std::string& out, const fetch_result& r, line_fields fields) {
  using namespace std::string_view_literals;  // (no strlen per literal)
  out += "{\"index\":"sv;
  append_number(out, r.index);
  out += ",\"url\":"sv;
  const std::size_t url_at = out.size();
  append_json_string(out, r.url);
  const std::size_t url_end = out.size();
  out += r.ok ? ",\"ok\":true,\"status\":"sv : ",\"ok\":false,\"status\":"sv;
  if (r.status != 0) {
    append_number(out, static_cast<std::uint64_t>(r.status));
  } else {
    out += "null"sv;
  }
  out += ",\"attempts\":"sv;
  append_number(out, r.attempts);
  out += ",\"elapsed_ms\":"sv;
  append_millis(out, r.elapsed_ms);
  out += ",\"bytes\":"sv;
  append_number(out, r.bytes);
  if (!r.final_url.empty()) {
    out += ",\"final_url\":"sv;
    if (r.final_url == r.url) {
      out.append(out, url_at, url_end - url_at);  // (no redirect: escaped once)
    } else {
      append_json_string(out, r.final_url);
    }
  }
  if (!r.ok) {
    out += ",\"error\":{\"kind\":"sv;
    append_json_string(out, r.error_kind);
    out += ",\"message\":"sv;
    append_json_string(out, r.error_message);
    out += '}';
  }
  if (!r.path.empty()) {
    out += ",\"path\":"sv;
    append_json_string(out, r.path);
  }
  if (fields.headers && r.status != 0) {  // [[name, value], ...]: order and repeats kept (Set-Cookie)
    out += ",\"headers\":["sv;
    bool first = true;
    for (const auto& [name, value] : r.response_headers) {
      if (!first) out += ',';
      first = false;
      out += '[';
      append_json_string(out, name);
      out += ',';
      append_json_string(out, value);
      out += ']';
    }
    out += ']';
  }
  if (fields.body && (r.ok || !r.body.empty())) {
    out += ",\"body\":"sv;
    if (is_text(r.body)) {
      append_json_string(out, r.body);
    } else {
      out += '"';
      out += base64(r.body);
      out += "\",\"body_encoding\":\"base64\""sv;
    }
  }
  out += "}\n"sv;
}

void result_writer::add(const fetch_result& r) {
  if (error_ != 0) {  // the output is dead: nothing more is written
    ++lost_;
    return;
  }
  append_result_line(buf_, r, fields_);
  ++buffered_;
  if (buf_.size() >= (256u << 10)) flush();
  pending.set();
}

void result_writer::flush() noexcept {
  pending.clear();
  std::size_t off = 0;
  while (off < buf_.size() && error_ == 0) {
    const ssize_t n = ::write(fd_, buf_.data() + off, buf_.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = errno;
      break;
    }
    off += static_cast<std::size_t>(n);
  }
  if (error_ == 0) {
    written_ += buffered_;
  } else {
    // Lines are JSON without raw newlines: the complete ones before `off`
    // were written; the rest (a line cut off included) are lost.
    const auto whole = static_cast<std::uint64_t>(
        std::count(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(off), '\n'));
    written_ += whole;
    lost_ += buffered_ - whole;
  }
  buffered_ = 0;
  buf_.clear();
}

namespace {

// How every spindle result line begins (append_result_line).
constexpr std::string_view result_prefix = "{\"index\":";

enum class line_kind { blank, other, final_result, cancelled };

struct line_info {
  line_kind kind = line_kind::other;
  std::uint64_t index = 0;
};

bool is_blank(std::string_view s) noexcept {
  return s.find_first_not_of(" \t\r\f\v") == std::string_view::npos;
}

// A result line: a JSON object with an unsigned integer "index" (at most
// max_resume_index) and a boolean "ok"; cancelled when its error's kind
// is "cancelled". Anything else that is not blank: other.
line_info classify(std::string_view line) {
  if (is_blank(line)) return {line_kind::blank, 0};
  const std::size_t first = line.find_first_not_of(" \t\r\f\v");
  if (line[first] != '{') return {};  // (not an object: no parse)
  const auto j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
  if (!j.is_object()) return {};
  const auto index = j.find("index");
  const auto ok = j.find("ok");
  if (index == j.end() || !index->is_number_unsigned() || ok == j.end() || !ok->is_boolean()) return {};
  const auto i = index->get<std::uint64_t>();
  if (i > max_resume_index) return {};
  const auto error = j.find("error");
  if (error != j.end() && error->is_object()) {
    const auto kind = error->find("kind");
    if (kind != error->end() && kind->is_string() && kind->get_ref<const std::string&>() == "cancelled")
      return {line_kind::cancelled, i};
  }
  return {line_kind::final_result, i};
}

// A last line without its newline that spindle may have been writing when
// it died: a prefix of a result line's beginning, or a line with it.
bool torn_result(std::string_view tail) noexcept {
  return tail.starts_with(result_prefix) || result_prefix.starts_with(tail);
}

std::string errno_text(int e) { return std::strerror(e); }

struct close_file {
  void operator()(FILE* f) const noexcept { std::fclose(f); }
};
struct free_memory {
  void operator()(char* p) const noexcept { std::free(p); }
};

// The lines of a file (POSIX getline: any length, NUL bytes kept).
class file_lines {
 public:
  explicit file_lines(FILE* f) : f_(f) {}
  ~file_lines() { std::free(buf_); }
  file_lines(const file_lines&) = delete;
  file_lines& operator=(const file_lines&) = delete;
  // The next line without its newline; false at the end or on an error
  // (error() then says which).
  bool next(std::string_view& line, bool& terminated) {
    errno = 0;
    const ssize_t n = ::getline(&buf_, &cap_, f_);
    if (n <= 0) {
      if (std::ferror(f_) != 0) error_ = errno != 0 ? errno : EIO;
      return false;
    }
    terminated = buf_[n - 1] == '\n';
    line = std::string_view(buf_, static_cast<std::size_t>(n) - (terminated ? 1 : 0));
    return true;
  }
  void rewind() {
    std::rewind(f_);
    error_ = 0;
  }
  [[nodiscard]] int error() const noexcept { return error_; }

 private:
  FILE* f_;
  char* buf_ = nullptr;
  std::size_t cap_ = 0;
  int error_ = 0;
};

// Further final results for an index already done: an identical line is
// dropped, a different one kept. Only the indices seen twice in the first
// pass are remembered (their first line), so memory follows the duplicates.
class duplicates {
 public:
  explicit duplicates(std::unordered_set<std::uint64_t> indices) : indices_(std::move(indices)) {}
  [[nodiscard]] bool empty() const noexcept { return indices_.empty(); }
  // True when `line` repeats the first final result of its index exactly.
  bool identical_repeat(std::uint64_t index, std::string_view line) {
    if (!indices_.contains(index)) return false;
    auto [it, first] = first_.try_emplace(index, line);
    return !first && it->second == line;
  }
  [[nodiscard]] bool is_repeat(std::uint64_t index) const { return first_.contains(index); }
  void reset() { first_.clear(); }

 private:
  std::unordered_set<std::uint64_t> indices_;
  std::unordered_map<std::uint64_t, std::string> first_;
};

// The verdict on one line in the passes after the first: keep it or not.
bool keep_line(std::string_view line, bool terminated, duplicates& dups) {
  if (!terminated && torn_result(line)) return false;
  const line_info info = classify(line);
  if (info.kind == line_kind::cancelled) return false;
  if (info.kind == line_kind::final_result && !dups.empty()) return !dups.identical_repeat(info.index, line);
  return true;
}

// Writes all of `data` to `fd`; 0 or the errno.
int write_all(int fd, std::string_view data) noexcept {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return 0;
}

}  // namespace

resume_scan prepare_resume(const std::string& path) {
  resume_scan scan;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return scan;  // nothing yet: a fresh run
    throw resume_error("cannot read " + path + ": " + errno_text(errno), true);
  }
  if (!S_ISREG(st.st_mode))
    throw resume_error(path + " is not a regular file (--resume needs the results file of an earlier run)",
                       true);
  {
    // Writable? (Opened for appending and closed again: nothing changes.)
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) throw resume_error("cannot write " + path + ": " + errno_text(errno), true);
    ::close(fd);
  }
  std::unique_ptr<FILE, close_file> f(std::fopen(path.c_str(), "rbe"));
  if (!f) throw resume_error("cannot read " + path + ": " + errno_text(errno), true);
  file_lines lines(f.get());
  auto read_failed = [&] {
    return resume_error("reading " + path + ": " + errno_text(lines.error()) + " (nothing was changed)",
                        false);
  };

  // First pass: what is there, nothing written.
  std::unordered_set<std::uint64_t> repeated;
  std::uint64_t line_no = 0, first_other = 0, torn_short = 0;
  bool is_results = false;  // a result line, or a torn one, seen
  bool needs_newline = false;
  std::string_view line;
  bool terminated = true;
  while (lines.next(line, terminated)) {
    ++line_no;
    if (!terminated) {
      scan.truncated_tail = true;
      if (torn_result(line)) {
        if (line.starts_with(result_prefix)) {
          is_results = true;
        } else {
          torn_short = line_no;  // ("{" alone: not enough to call the file a results file)
        }
        ++scan.dropped;
        continue;
      }
      needs_newline = !is_blank(line);  // a kept last line: the appended results must not join it
    }
    const line_info info = classify(line);
    switch (info.kind) {
      case line_kind::blank: break;
      case line_kind::other:
        ++scan.kept_other;
        if (first_other == 0) first_other = line_no;
        break;
      case line_kind::cancelled:
        is_results = true;
        ++scan.dropped;
        break;
      case line_kind::final_result:
        is_results = true;
        if (scan.has(info.index)) {
          repeated.insert(info.index);
        } else {
          if (scan.done.size() <= info.index) scan.done.resize(info.index + 1, false);
          scan.done[info.index] = true;
          ++scan.final_results;
        }
        break;
    }
  }
  if (lines.error() != 0) throw read_failed();
  if (!is_results) {
    if (first_other == 0 && torn_short == 0) return resume_scan{};  // empty, or blank lines only: as it is
    throw resume_error(path + " is not a spindle results file: line " +
                           std::to_string(first_other != 0 ? first_other : torn_short) +
                           " is not a result (a JSON object with \"index\" and \"ok\"); the file was left "
                           "unchanged (give the results file of an earlier run, or another --out)",
                       true);
  }

  // Second pass, when an index has several final results: identical
  // repeats are dropped, different ones kept (and counted).
  duplicates dups(std::move(repeated));
  if (!dups.empty()) {
    lines.rewind();
    while (lines.next(line, terminated)) {
      if (!terminated && torn_result(line)) continue;
      const line_info info = classify(line);
      if (info.kind != line_kind::final_result) continue;
      const bool repeat = dups.is_repeat(info.index);
      if (dups.identical_repeat(info.index, line)) {
        ++scan.dropped;
      } else if (repeat) {
        ++scan.conflicting;
      }
    }
    if (lines.error() != 0) throw read_failed();
    dups.reset();
  }
  if (scan.dropped == 0 && !needs_newline) return scan;

  // The rewrite: every line kept, in order, byte for byte, into a new file
  // beside the real one (a symlink stays a symlink), with its mode; synced,
  // then renamed over it. On any failure the temporary file is removed and
  // the original is as it was.
  std::unique_ptr<char, free_memory> real(::realpath(path.c_str(), nullptr));
  if (!real) throw resume_error("cannot resolve " + path + ": " + errno_text(errno), true);
  std::string tmp = std::string(real.get()) + ".resume-tmp.XXXXXX";
  const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  auto failed = [&](const std::string& what, int e) {
    if (fd >= 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
    }
    const std::string why =
        scan.dropped != 0 ? "to drop " + std::to_string(scan.dropped) + " cancelled, repeated or torn lines"
                          : std::string("to end its last line");
    return resume_error("rewriting " + path + " (" + why + ") failed: " + what + ": " + errno_text(e) + "; " +
                            path + " is unchanged",
                        false);
  };
  if (fd < 0) throw failed("creating " + tmp, errno);
  if (::fchmod(fd, st.st_mode & 07777) != 0) throw failed("setting the mode of " + tmp, errno);
  if (::geteuid() == 0) (void)::fchown(fd, st.st_uid, st.st_gid);
  lines.rewind();
  std::string buf;
  while (lines.next(line, terminated)) {
    if (!keep_line(line, terminated, dups)) continue;
    buf += line;
    buf += '\n';
    if (buf.size() >= (64u << 10)) {
      if (const int e = write_all(fd, buf); e != 0) throw failed("writing " + tmp, e);
      buf.clear();
    }
  }
  if (lines.error() != 0) {
    const int e = lines.error();
    throw failed("reading " + path, e);
  }
  if (const int e = write_all(fd, buf); e != 0) throw failed("writing " + tmp, e);
  if (::fsync(fd) != 0) throw failed("syncing " + tmp, errno);
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw resume_error("rewriting " + path + " failed: closing " + tmp + ": " + errno_text(e) + "; " + path +
                           " is unchanged",
                       false);
  }
  if (::rename(tmp.c_str(), real.get()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw resume_error("rewriting " + path + " failed: renaming " + tmp + ": " + errno_text(e) + "; " + path +
                           " is unchanged",
                       false);
  }
  scan.rewritten = true;
  return scan;
}

}  // namespace spindle::cli
