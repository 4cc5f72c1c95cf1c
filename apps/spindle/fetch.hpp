#pragma once
// `spindle fetch`: fetch many URLs concurrently, one JSON Lines result per
// input (docs/cli.md).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spindle/clock.hpp"

namespace spindle::cli {

struct fetch_options {
  std::vector<std::string> urls;  ///< from the command line, before --urls
  std::string urls_file;          ///< "-": stdin; empty: none
  std::size_t concurrency = 64;
  std::size_t loops = 1;     ///< --loops: event loops (threads) fetching; the limits stay totals
  std::size_t per_host = 0;  ///< 0: as many as concurrency
  duration timeout = std::chrono::seconds(10);
  duration deadline = duration::zero();  ///< whole run; zero: none
  unsigned retries = 2;
  duration backoff = std::chrono::milliseconds(100);
  std::string out;  ///< empty or "-": stdout
  bool body = false;
  std::string output_dir;        ///< --output-dir: ok bodies saved here, one file each
  std::string name_template;     ///< --name: the file names (default "{index}")
  bool include_headers = false;  ///< the response's fields in each result
  std::uint64_t max_body = 64ull * 1024 * 1024;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string method = "GET";
  std::optional<std::string> data;  ///< the request body (already read from @FILE)
  bool insecure = false;
  bool resume = false;
  bool retry_unsafe = false;
  bool quiet = false;
  int progress = -1;  ///< -1: when stderr is a terminal; 0 off; 1 on
  double rate = 0;    ///< requests per second, 0: unlimited
  std::uint64_t shard_k = 0;
  std::uint64_t shard_n = 1;
  bool shard_by_host = false;  ///< --shard-by host: a host's inputs all in one shard
  bool ordered = false;        ///< --ordered: results in input order
  int max_redirects = 10;
  bool allow_insecure_redirects = false;  ///< follow https → http (credentials still dropped)
  duration max_retry_after = std::chrono::seconds(60);
  std::string cacert;  ///< --cacert: trusted CAs (PEM) instead of the system store
  std::string capath;  ///< --capath: a directory of CAs (`openssl rehash`)
  std::string cert;    ///< --cert: client certificate (PEM)
  std::string key;     ///< --key: its private key (default: in --cert)
  std::string user;    ///< --user USER:PASSWORD: Basic credentials for the inputs' origins
};

/// Which inputs are this shard's: input k of every n by index, or, by
/// host, those whose URL's host hashes to k (FNV-1a, the same on every
/// machine), so each host's inputs, and its per-host limit and rate, stay
/// in one shard.
struct shard_filter {
  std::uint64_t k = 0, n = 1;
  bool by_host = false;
  [[nodiscard]] bool mine(std::uint64_t index, std::string_view url) const;
};
[[nodiscard]] inline shard_filter shard_of(const fetch_options& o) noexcept {
  return {o.shard_k, o.shard_n, o.shard_by_host};
}
/// The host part of an input as --shard-by host sees it: lower case,
/// without scheme, userinfo, port or a trailing dot ("" when none).
[[nodiscard]] std::string shard_host(std::string_view url);

/// --loops at most.
inline constexpr std::size_t max_fetch_loops = 64;

/// Exit codes.
inline constexpr int exit_ok = 0;
inline constexpr int exit_io = 1;  ///< the output could not be written
inline constexpr int exit_usage = 2;
inline constexpr int exit_failed = 3;
inline constexpr int exit_interrupted = 130;

/// Runs the fetch; returns the exit code. Usage problems found before the
/// run starts (an unreadable --urls or --out) print one line and return 2.
[[nodiscard]] int run_fetch(const fetch_options& opts);

}  // namespace spindle::cli
