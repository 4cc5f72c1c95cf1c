#pragma once
// Parsing of the CLI's option values: durations, rates, shards, headers and
// byte counts. Each throws std::invalid_argument with a message that says
// what was expected; the caller prefixes the option name.

#include <cstdint>
#include <functional>
#include <optional>
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
/// `--shard auto`: this process's shard from a batch engine's array
/// variables, looked up with `env` (getenv in the CLI), first found wins:
/// Kubernetes Indexed Jobs (JOB_COMPLETION_INDEX; the count from `count`,
/// else SPINDLE_SHARD_COUNT), Slurm arrays (SLURM_ARRAY_TASK_ID minus
/// SLURM_ARRAY_TASK_MIN, divided by SLURM_ARRAY_TASK_STEP; SLURM_ARRAY_TASK_COUNT),
/// AWS Batch (AWS_BATCH_JOB_ARRAY_INDEX, AWS_BATCH_JOB_ARRAY_SIZE). `count`
/// (--shard-count) overrides the engine's count. Throws invalid_argument
/// naming the variables when none is set or the values do not make K < N.
[[nodiscard]] shard_spec shard_from_environment(std::optional<std::uint64_t> count,
                                                const std::function<const char*(const char*)>& env);
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
