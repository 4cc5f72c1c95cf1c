// The fetch engine's error kinds and latency histogram
// (include/spindle/http/fetch.hpp).

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>

#include "spindle/error.hpp"
#include "spindle/http/fetch.hpp"

namespace spindle::http {

namespace {
// The kinds a fetch result can carry (a subset of the registry, in its
// order); anything else is reported as "rejected" with the original kind
// in the message.
constexpr std::array<error_kind, 10> fetch_kinds{
    error_kind::cancelled, error_kind::timeout,    error_kind::rejected,    error_kind::dns,
    error_kind::connect,   error_kind::tls,        error_kind::invalid_url, error_kind::protocol,
    error_kind::redirect,  error_kind::http_status};
}  // namespace

const std::vector<std::string_view>& fetch_error_kinds() {
  static const std::vector<std::string_view> kinds = [] {
    std::vector<std::string_view> v;
    for (error_kind k : fetch_kinds) v.push_back(error_kind_name(k));
    return v;
  }();
  return kinds;
}

std::string fetch_error_kind(const std::exception_ptr& e, std::string& message) {
  try {
    std::rethrow_exception(e);
  } catch (const spindle::error& err) {
    message = err.what();
    const error_kind k = err.kind_id();
    if (std::find(fetch_kinds.begin(), fetch_kinds.end(), k) != fetch_kinds.end())
      return std::string(error_kind_name(k));
    message = std::string(err.kind()) + ": " + message;
    return std::string(error_kind_name(error_kind::rejected));
  } catch (const std::exception& err) {
    message = err.what();
    return std::string(error_kind_name(error_kind::rejected));
  } catch (...) {
    message = "unknown exception";
    return std::string(error_kind_name(error_kind::rejected));
  }
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

void latency_histogram::merge(const latency_histogram& other) {
  if (buckets_.size() < other.buckets_.size()) buckets_.resize(other.buckets_.size(), 0);
  for (std::size_t b = 0; b < other.buckets_.size(); ++b) buckets_[b] += other.buckets_[b];
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
}

void fetch_statistics::merge(const fetch_statistics& other) {
  read += other.read;
  ok += other.ok;
  failed += other.failed;
  retries += other.retries;
  in_flight += other.in_flight;
  input_done = input_done || other.input_done;
  deadline_hit = deadline_hit || other.deadline_hit;
  for (const auto& [kind, n] : other.errors) errors[kind] += n;
  latency.merge(other.latency);
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

}  // namespace spindle::http
