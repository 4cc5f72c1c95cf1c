#pragma once
/// \file
/// Splitting a request target ("/graph/7?mode=sequential") into its path
/// segments and query parameters.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace aggregator {

struct request_target {
  std::vector<std::string> segments;  ///< "/graph/7" → {"graph", "7"}
  std::map<std::string, std::string, std::less<>> query;

  /// The parameter as an integer, `fallback` when absent; nullopt when
  /// present but not an integer in [min, max].
  [[nodiscard]] std::optional<long long> int_param(std::string_view name, long long fallback, long long min,
                                                   long long max) const;
};

/// Percent-decodes query names and values ('+' is a space).
[[nodiscard]] request_target parse_target(std::string_view target);

/// A decimal integer in [min, max], or nullopt.
[[nodiscard]] std::optional<long long> parse_int(std::string_view s, long long min, long long max);

}  // namespace aggregator
