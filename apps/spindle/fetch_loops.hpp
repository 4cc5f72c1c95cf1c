#pragma once
// spindle fetch --loops N (N > 1): a fetcher per loop of a loop_group
// sharing one http::fetch_limits; the main loop reads, orders and writes
// (fetch_loops.cpp).

#include <cstdint>
#include <memory>
#include <string>

#include "fetch.hpp"
#include "fetch_source.hpp"
#include "output.hpp"
#include "spindle/http/client.hpp"
#include "spindle/http/fetch.hpp"

namespace spindle::cli {

class loop_fetch {
 public:
  loop_fetch(const fetch_options& o, event_loop& main, cli_source& source, result_writer& out,
             const http::fetch_options& engine_opts);
  ~loop_fetch();
  loop_fetch(const loop_fetch&) = delete;
  loop_fetch& operator=(const loop_fetch&) = delete;

  /// On the main loop: runs every loop's fetcher to its end; the results
  /// are all written (or held by the writer) when it returns.
  task<http::fetch_statistics> run();
  /// From the main loop: stops every loop's fetcher (the first reason wins).
  void stop(const std::string& reason);
  /// For the progress line (main loop).
  [[nodiscard]] progress_counts counts() const;
  /// After run(): every loop's client, added up; stalls of all loops.
  [[nodiscard]] http::client_statistics client_statistics() const;
  /// "12 40 ...": the inputs each loop took.
  [[nodiscard]] std::string inputs_per_loop() const;
  [[nodiscard]] std::uint64_t stalls() const;
  [[nodiscard]] duration longest_stall() const;

  class impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace spindle::cli
