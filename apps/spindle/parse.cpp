#include "parse.hpp"

#include "fetch.hpp"
#include "spindle/diagnostics.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <optional>
#include <stdexcept>

namespace spindle::cli {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A non-negative decimal number at the start of `s`; `s` keeps the rest.
std::optional<double> leading_number(std::string_view& s) {
  std::size_t i = 0;
  bool digits = false;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) != 0 || s[i] == '.')) {
    digits = digits || s[i] != '.';
    ++i;
  }
  if (!digits) return std::nullopt;
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + i, v);
  if (ec != std::errc{} || end != s.data() + i || !std::isfinite(v)) return std::nullopt;
  s.remove_prefix(i);
  return v;
}

// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`,
// case ignored: the optimal string alignment distance.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  auto lower = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1]))
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::string closest_name(std::string_view typed, const std::vector<std::string>& names) {
  // At most two edits, and fewer than half of what was typed: "de" is no typo of "demo".
  if (typed.empty()) return {};
  std::size_t best = std::min<std::size_t>(2, (typed.size() - 1) / 2) + 1;
  std::string found;
  for (const auto& n : names) {
    const std::size_t d = edit_distance(typed, n);
    if (d < best) {
      best = d;
      found = n;
    }
  }
  return found;
}

duration parse_duration(std::string_view text) {
  std::string_view s = trim(text);
  const std::string expected = "bad duration '" + std::string(text) + "' (expected e.g. 250ms, 2s, 1m)";
  auto v = leading_number(s);
  if (!v) throw std::invalid_argument(expected);
  double seconds = 0;
  s = trim(s);
  if (s.empty() || s == "s") {
    seconds = *v;
  } else if (s == "ms") {
    seconds = *v / 1e3;
  } else if (s == "us") {
    seconds = *v / 1e6;
  } else if (s == "m" || s == "min") {
    seconds = *v * 60;
  } else if (s == "h") {
    seconds = *v * 3600;
  } else {
    throw std::invalid_argument(expected);
  }
  if (seconds > 365.0 * 24 * 3600) throw std::invalid_argument(expected + ": more than a year");
  return std::chrono::duration_cast<duration>(std::chrono::duration<double>(seconds));
}

double parse_rate(std::string_view text) {
  std::string_view s = trim(text);
  const std::string expected = "bad rate '" + std::string(text) + "' (expected e.g. 50/s, 600/m)";
  auto v = leading_number(s);
  if (!v || *v <= 0) throw std::invalid_argument(expected);
  s = trim(s);
  if (s.empty() || s == "/s") return *v;
  if (s == "/m") return *v / 60;
  if (s == "/h") return *v / 3600;
  throw std::invalid_argument(expected);
}

shard_spec parse_shard(std::string_view text) {
  const std::string expected =
      "bad shard '" + std::string(text) + "' (expected K/N with 0 <= K < N, e.g. 0/4)";
  const std::string_view s = trim(text);
  const auto slash = s.find('/');
  if (slash == std::string_view::npos) throw std::invalid_argument(expected);
  shard_spec r;
  auto a = std::from_chars(s.data(), s.data() + slash, r.k);
  auto b = std::from_chars(s.data() + slash + 1, s.data() + s.size(), r.n);
  if (a.ec != std::errc{} || a.ptr != s.data() + slash || b.ec != std::errc{} ||
      b.ptr != s.data() + s.size() || r.n == 0 || r.k >= r.n)
    throw std::invalid_argument(expected);
  return r;
}

namespace {
std::optional<std::uint64_t> env_number(const std::function<const char*(const char*)>& env,
                                        const char* name) {
  const char* v = env(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  std::uint64_t n = 0;
  const std::string_view t(v);
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
  if (ec != std::errc{} || end != t.data() + t.size())
    throw std::invalid_argument(std::string(name) + "='" + v + "' is not a number");
  return n;
}
}  // namespace

shard_spec shard_from_environment(std::optional<std::uint64_t> count,
                                  const std::function<const char*(const char*)>& env) {
  shard_spec r;
  std::string from;
  std::optional<std::uint64_t> n;
  if (auto k = env_number(env, "JOB_COMPLETION_INDEX")) {  // Kubernetes Indexed Job
    r.k = *k;
    n = env_number(env, "SPINDLE_SHARD_COUNT");
    from = "JOB_COMPLETION_INDEX (count: --shard-count or SPINDLE_SHARD_COUNT)";
  } else if (auto id = env_number(env, "SLURM_ARRAY_TASK_ID")) {  // Slurm array
    const std::uint64_t min = env_number(env, "SLURM_ARRAY_TASK_MIN").value_or(0);
    const std::uint64_t step = env_number(env, "SLURM_ARRAY_TASK_STEP").value_or(1);
    if (*id < min || step == 0 || (*id - min) % step != 0)
      throw std::invalid_argument("SLURM_ARRAY_TASK_ID is not MIN + a multiple of STEP");
    r.k = (*id - min) / step;
    n = env_number(env, "SLURM_ARRAY_TASK_COUNT");
    from = "SLURM_ARRAY_TASK_ID/_MIN/_STEP/_COUNT";
  } else if (auto aws = env_number(env, "AWS_BATCH_JOB_ARRAY_INDEX")) {  // AWS Batch array job
    r.k = *aws;
    n = env_number(env, "AWS_BATCH_JOB_ARRAY_SIZE");
    from = "AWS_BATCH_JOB_ARRAY_INDEX/_SIZE";
  } else {
    throw std::invalid_argument(
        "auto: no array index in the environment (JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID or "
        "AWS_BATCH_JOB_ARRAY_INDEX)");
  }
  if (count) n = count;
  if (!n) throw std::invalid_argument("auto: the shard count is missing (" + from + ")");
  r.n = *n;
  if (r.n == 0 || r.k >= r.n)
    throw std::invalid_argument("auto: index " + std::to_string(r.k) + " is not below the count " +
                                std::to_string(r.n) + " (" + from + ")");
  return r;
}

std::pair<std::string, std::string> parse_header(std::string_view text) {
  const auto colon = text.find(':');
  const std::string expected = "bad header '" + std::string(text) + "' (expected 'Name: value')";
  if (colon == std::string_view::npos) throw std::invalid_argument(expected);
  const std::string_view name = trim(text.substr(0, colon));
  if (name.empty()) throw std::invalid_argument(expected);
  for (char c : name) {
    if (c <= ' ' || c == ':' || c == 127) throw std::invalid_argument(expected);
  }
  const std::string_view value = trim(text.substr(colon + 1));
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0')
      throw std::invalid_argument(expected + ": control character in the value");
  }
  return {std::string(name), std::string(value)};
}

std::uint64_t parse_bytes(std::string_view text) {
  const std::string_view s = trim(text);
  const std::string expected = "bad size '" + std::string(text) + "' (expected e.g. 1048576, 64k, 10M)";
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end == s.data()) throw std::invalid_argument(expected);
  std::string_view unit = trim(std::string_view(end, static_cast<std::size_t>(s.data() + s.size() - end)));
  std::uint64_t mult = 1;
  if (unit.empty() || unit == "B" || unit == "b") {
    mult = 1;
  } else if (unit == "k" || unit == "K" || unit == "KiB") {
    mult = 1024;
  } else if (unit == "M" || unit == "MiB") {
    mult = 1024 * 1024;
  } else if (unit == "G" || unit == "GiB") {
    mult = 1024ull * 1024 * 1024;
  } else {
    throw std::invalid_argument(expected);
  }
  if (v > UINT64_MAX / mult) throw std::invalid_argument(expected + ": too large");
  return v * mult;
}

std::string format_duration(duration d) { return describe_duration(d); }

std::string shard_host(std::string_view url) {
  if (const auto at = url.find("://"); at != std::string_view::npos) url.remove_prefix(at + 3);
  url = url.substr(0, std::min(url.size(), url.find_first_of("/?#")));
  if (const auto at = url.rfind('@'); at != std::string_view::npos) url.remove_prefix(at + 1);
  if (url.starts_with('[')) {
    url = url.substr(0, std::min(url.size(), url.find(']') + 1));
  } else {
    url = url.substr(0, std::min(url.size(), url.find(':')));
  }
  if (url.ends_with('.')) url.remove_suffix(1);
  std::string host(url);
  for (char& c : host)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return host;
}

bool shard_filter::mine(std::uint64_t index, std::string_view url) const {
  if (n <= 1) return true;
  if (!by_host) return index % n == k;
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a 64: stable across machines and builds
  for (const char c : shard_host(url)) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h % n == k;
}

}  // namespace spindle::cli
