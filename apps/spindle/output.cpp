#include "output.hpp"

#include <unistd.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

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

std::string error_kind_of(const std::exception_ptr& e, std::string& message) {
  try {
    std::rethrow_exception(e);
  } catch (const spindle::error& err) {
    message = err.what();
    const std::string_view k = err.kind();
    for (std::string_view known : {"invalid_url", "dns", "connect", "tls", "timeout", "protocol", "redirect",
                                   "http_status", "cancelled"}) {
      if (k == known) return std::string(known);
    }
    message = std::string(k) + ": " + message;
    return "rejected";
  } catch (const std::exception& err) {
    message = err.what();
    return "rejected";
  } catch (...) {
    message = "unknown exception";
    return "rejected";
  }
}

std::string progress_line(const progress_counts& c) {
  const std::uint64_t done = c.ok + c.failed;
  const double per_s = c.secs > 0 ? static_cast<double>(done) / c.secs : 0.0;
  char line[256];
  if (c.input_done && c.read > 0) {
    const double frac = static_cast<double>(done) / static_cast<double>(c.read);
    char bar[25];
    const int filled = static_cast<int>(frac * 24);
    for (int i = 0; i < 24; ++i) bar[i] = i < filled ? '#' : '.';
    bar[24] = '\0';
    const double eta = per_s > 0 ? static_cast<double>(c.read - done) / per_s : 0.0;
    std::snprintf(line, sizeof line,
                  "\r\x1b[K[%s] %3.0f%% %llu/%llu ok=%llu failed=%llu %zu in flight %.1f/s %.1fs eta %.0fs",
                  bar, frac * 100, static_cast<unsigned long long>(done),
                  static_cast<unsigned long long>(c.read), static_cast<unsigned long long>(c.ok),
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

void append_result_line(std::string& out, const fetch_result& r) {
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
  if (r.body != nullptr) {
    out += ",\"body\":"sv;
    if (is_text(*r.body)) {
      append_json_string(out, *r.body);
    } else {
      out += '"';
      out += base64(*r.body);
      out += "\",\"body_encoding\":\"base64\""sv;
    }
  }
  out += "}\n"sv;
}

void result_writer::add(const fetch_result& r) {
  append_result_line(buf_, r);
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
  buf_.clear();
}

resume_scan prepare_resume(const std::string& path) {
  resume_scan scan;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (::access(path.c_str(), F_OK) != 0) return scan;  // nothing yet: a fresh run
    throw std::runtime_error("cannot read " + path + " to resume from it");
  }
  bool rewrite = false;
  std::string line;
  while (std::getline(in, line)) {
    const bool complete = !in.eof();  // getline hit a newline
    if (!complete) scan.truncated_tail = true;
    auto j = nlohmann::json::parse(line, nullptr, false);
    bool keep = false;
    if (complete && j.is_object() && j.contains("index") && j["index"].is_number_unsigned()) {
      const auto index = j["index"].get<std::uint64_t>();
      const bool cancelled =
          j.contains("error") && j["error"].is_object() && j["error"].value("kind", "") == "cancelled";
      if (!cancelled && !scan.has(index)) {
        if (scan.done.size() <= index) scan.done.resize(index + 1, false);
        scan.done[index] = true;
        keep = true;
      }
    }
    if (keep) {
      ++scan.final_results;
    } else {
      ++scan.dropped;
      rewrite = true;
    }
  }
  if (in.bad()) throw std::runtime_error("reading " + path + " failed");
  if (!rewrite) return scan;
  // Rewrite without the dropped lines (a second pass: memory stays bounded).
  in.clear();
  in.seekg(0);
  const std::string tmp = path + ".resume-tmp";
  {
    std::ofstream outf(tmp, std::ios::binary | std::ios::trunc);
    if (!outf) throw std::runtime_error("cannot write " + tmp + " (needed to drop cancelled results)");
    std::vector<bool> seen(scan.done.size(), false);
    while (std::getline(in, line)) {
      if (in.eof()) break;  // the unterminated tail
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_object() || !j.contains("index") || !j["index"].is_number_unsigned()) continue;
      const auto index = j["index"].get<std::uint64_t>();
      const bool cancelled =
          j.contains("error") && j["error"].is_object() && j["error"].value("kind", "") == "cancelled";
      if (cancelled || index >= seen.size() || seen[index]) continue;
      seen[index] = true;
      outf << line << '\n';
    }
    outf.flush();
    if (!outf) throw std::runtime_error("writing " + tmp + " failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("cannot replace " + path + " with " + tmp);
  return scan;
}

namespace {
// Log-linear buckets of whole microseconds, as in HdrHistogram: exact below
// 128 us, then 64 buckets per power of two (at most 1.6% wide). An integer
// bit count per sample, no logarithm.
constexpr std::uint64_t exact_below = 128, per_octave = 64;

std::size_t bucket_of(std::uint64_t us) {
  if (us < exact_below) return static_cast<std::size_t>(us);
  const int shift = std::bit_width(us) - 7;  // us >> shift is in [64, 128)
  return static_cast<std::size_t>(exact_below + static_cast<std::uint64_t>(shift - 1) * per_octave +
                                  ((us >> shift) - per_octave));
}

// The middle of bucket b, in microseconds.
double bucket_middle(std::size_t b) {
  if (b < exact_below) return static_cast<double>(b) + 0.5;
  const std::uint64_t k = b - exact_below;
  const auto shift = static_cast<int>(k / per_octave + 1);
  const std::uint64_t low = (per_octave + k % per_octave) << shift;
  return static_cast<double>(low) + static_cast<double>(std::uint64_t{1} << shift) / 2;
}
}  // namespace

void latency_histogram::add(double ms) {
  const double us = ms * 1000;
  const std::size_t b =
      bucket_of(us >= 1 ? (us < 1e15 ? static_cast<std::uint64_t>(us) : std::uint64_t{1} << 50) : 0);
  if (buckets_.size() <= b) buckets_.resize(b + 1, 0);
  ++buckets_[b];
  ++count_;
  max_ = std::max(max_, ms);
}

double latency_histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  const auto rank =
      std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_))));
  std::uint64_t seen = 0;
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    seen += buckets_[b];
    if (seen >= rank && buckets_[b] != 0) return std::min(max_, bucket_middle(b) / 1000);
  }
  return max_;
}

}  // namespace spindle::cli
