#pragma once
// Parsing of the CLI's option values: durations, rates, shards, headers and
// byte counts. Each throws std::invalid_argument with a message that says
// what was expected; the caller prefixes the option name.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spindle/clock.hpp"

namespace spindle::cli {

/// "250ms", "2s", "1.5s", "1m", "1h", "100us"; a bare number is seconds.
[[nodiscard]] duration parse_duration(std::string_view text);
/// "50/s", "600/m", "3600/h", or a bare number (per second) -> per second.
[[nodiscard]] double parse_rate(std::string_view text);
struct shard_spec {
  std::uint64_t k = 0;
  std::uint64_t n = 1;
};
/// "K/N" with 0 <= K < N.
[[nodiscard]] shard_spec parse_shard(std::string_view text);
/// "Name: value".
[[nodiscard]] std::pair<std::string, std::string> parse_header(std::string_view text);
/// "1048576", "64k", "10M", "1G" (binary multiples).
[[nodiscard]] std::uint64_t parse_bytes(std::string_view text);
/// "1.5 s", "250 ms": for messages.
[[nodiscard]] std::string format_duration(duration d);
/// The name in `names` closest to `typed` (a typo: one or two letters
/// wrong, missing, extra or swapped; case ignored), or "" when none is.
[[nodiscard]] std::string closest_name(std::string_view typed, const std::vector<std::string>& names);

}  // namespace spindle::cli
