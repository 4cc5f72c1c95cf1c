// The run's contract at its edges, end to end against the binary and the
// loopback mock API: --deadline gives exactly one result per input of a
// regular file (also when the stop cuts a batch read off), and a dead
// output (a closed pipe, a full disk) stops the run, with the results
// written and lost counted exactly.

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_support.hpp"
#include "mock_api.hpp"

namespace {

using namespace std::chrono_literals;
using namespace spindle::cli_test;

// `n` mock API URLs, one a line, in a regular file.
std::string write_urls(const temp_dir& dir, const spindle::cli::mock_api& api, std::size_t n) {
  const std::string path = dir.file("urls.txt");
  std::ofstream f(path);
  for (std::size_t i = 0; i < n; ++i) f << api.base_url() << "/items/" << i << '\n';
  return path;
}

// The value of `key=N` in `line`; -1 when absent.
long long count_of(const std::string& line, const std::string& key) {
  const std::size_t at = line.find(" " + key + "=");
  if (at == std::string::npos && !line.starts_with(key + "=")) return -1;
  const std::size_t from = (at == std::string::npos ? 0 : at + 1) + key.size() + 1;
  return std::stoll(line.substr(from));
}

// Every input 0..n-1 has exactly one result line in `out`; the ones not ok
// are `cancelled` (the mock answers 200). Returns how many were cancelled.
std::size_t expect_one_result_each(const std::string& out, std::size_t n) {
  const std::vector<json> results = lines_of(out);
  expect_one_result_per_input(results, n);
  std::size_t cancelled = 0;
  for (const auto& j : results) {
    if (!j.is_object() || !j.contains("index")) continue;  // (reported above)
    if (!j.contains("ok") || !j["ok"].is_boolean()) {
      ADD_FAILURE() << "a result without a boolean ok: " << j.dump();
      continue;
    }
    if (!j["ok"].get<bool>()) {
      EXPECT_EQ(j.contains("error") ? j["error"].value("kind", "") : "", "cancelled") << j.dump();
      ++cancelled;
    }
  }
  return cancelled;
}

// --deadline over a regular file of 20,000 inputs, rate-limited so the
// deadline always cuts the run (4,000/s with a burst of 400 cannot start
// 20,000 requests in the time given): exactly one result per input.
void deadline_keeps_the_contract(const std::string& deadline) {
  spindle::cli::mock_api api;
  temp_dir dir;
  constexpr std::size_t n = 20000;
  const std::string urls = write_urls(dir, api, n);
  const run_result r = run(dir, {"fetch", "--urls", urls, "--rate", "4000/s", "--deadline", deadline, "-q"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  const std::size_t cancelled = expect_one_result_each(r.out, n);
  EXPECT_GT(cancelled, 0u) << "the deadline should have cut the run";
  const std::string summary = first_line(r.err);
  EXPECT_EQ(count_of(summary, "ok") + count_of(summary, "failed"), static_cast<long long>(n)) << r.err;
  EXPECT_EQ(count_of(summary, "lost"), -1) << "no write error, no written/lost counts: " << r.err;
}

TEST(RunContract, DeadlineOfOneSecondGivesOneResultPerInputOfARegularFile) {
  deadline_keeps_the_contract("1s");
}

TEST(RunContract, DeadlineOf200msGivesOneResultPerInputOfARegularFile) {
  deadline_keeps_the_contract("200ms");
}

// `spindle fetch --urls 100k.txt | head -1`: the reader of stdout goes away
// after the first line; the run stops (EPIPE) instead of making every request.
TEST(RunContract, ClosedPipeAfterTheFirstLineStopsTheRun) {
  spindle::cli::mock_api api;
  temp_dir dir;
  constexpr std::size_t n = 100000;
  const std::string urls = write_urls(dir, api, n);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  child_setup setup;
  setup.stdout_fd = fds[1];
  const pid_t pid = start(dir, {"fetch", "--urls", urls}, setup);
  ::close(fds[1]);
  // Read up to the first newline (as head -1 does), then close the pipe.
  std::string got;
  char buf[4096];
  while (got.find('\n') == std::string::npos) {
    const ssize_t k = ::read(fds[0], buf, sizeof buf);
    if (k <= 0) break;
    got.append(buf, static_cast<std::size_t>(k));
  }
  ::close(fds[0]);
  ASSERT_NE(got.find('\n'), std::string::npos) << "no first line";
  EXPECT_TRUE(json::parse(first_line(got), nullptr, false).is_object()) << got;
  const run_result r = finish(dir, pid, setup);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_LT(api.requests(), 1000u) << r.err;
  const std::string summary = first_line(r.err);
  EXPECT_TRUE(summary.starts_with("ok=")) << r.err;
  const long long written = count_of(summary, "written");
  const long long lost = count_of(summary, "lost");
  EXPECT_GE(written, 1) << r.err;
  EXPECT_GE(lost, 1) << r.err;
  EXPECT_EQ(written + lost, count_of(summary, "ok") + count_of(summary, "failed")) << r.err;
  EXPECT_LT(written + lost, static_cast<long long>(n)) << "the rest of the input is not read: " << r.err;
  EXPECT_NE(r.err.find("Broken pipe"), std::string::npos) << r.err;
}

// A full disk (EFBIG from RLIMIT_FSIZE, the same write path as ENOSPC):
// exit 1, the written lines are exactly the complete lines of --out, the
// written and lost counts add up to the inputs read, and no request starts
// after the failure.
TEST(RunContract, FullDiskOnOutStopsTheRunAndCountsWrittenAndLost) {
  spindle::cli::mock_api api;
  temp_dir dir;
  constexpr std::size_t n = 20000;
  constexpr std::size_t concurrency = 16;
  const std::string urls = write_urls(dir, api, n);
  const std::string out = dir.file("out.jsonl");
  child_setup setup;
  setup.file_size_limit = 32 << 10;
  const run_result r =
      run(dir, {"fetch", "--urls", urls, "--out", out, "-c", std::to_string(concurrency), "-q"}, setup);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const std::string summary = first_line(r.err);
  EXPECT_TRUE(summary.starts_with("ok=")) << r.err;
  const long long written = count_of(summary, "written");
  const long long lost = count_of(summary, "lost");
  const long long results = count_of(summary, "ok") + count_of(summary, "failed");
  EXPECT_EQ(written + lost, results) << r.err;
  EXPECT_GE(lost, 1) << r.err;
  EXPECT_LT(results, static_cast<long long>(n)) << "the rest of the input is not read: " << r.err;
  EXPECT_NE(r.err.find("File too large"), std::string::npos) << r.err;
  // The complete lines in the file are the results written (a line cut off
  // by the limit is lost), each a result.
  const std::string text = slurp(out);
  const std::string complete = text.substr(0, text.rfind('\n') + 1);
  EXPECT_EQ(static_cast<long long>(std::count(complete.begin(), complete.end(), '\n')), written) << r.err;
  std::istringstream lines(complete);
  std::string line;
  while (std::getline(lines, line)) EXPECT_TRUE(json::parse(line, nullptr, false).is_object()) << line;
  // Requests: those written, those in the batch that failed and those in
  // flight when it failed (each at most a few windows); none afterwards.
  EXPECT_LE(api.requests(), static_cast<std::uint64_t>(written) + 4 * concurrency) << r.err;
}

}  // namespace

namespace {

// Issue #16 point 7: a stall (here: the results pipe is full and nobody
// reads it for 600 ms, so a write holds the loop) is one short line with a
// readable task name when it ends, and a count in the summary; nothing of
// it under -q.
std::string stalled_run(bool quiet) {
  spindle::cli::mock_api api;
  temp_dir dir;
  const std::string urls = write_urls(dir, api, 3000);  // > 64 KiB of results: the pipe fills
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  child_setup setup;
  setup.stdout_fd = fds[1];
  std::vector<std::string> args{"fetch", "--urls", urls};
  if (quiet) args.emplace_back("-q");
  const pid_t pid = start(dir, args, setup);
  ::close(fds[1]);
  std::this_thread::sleep_for(600ms);  // the stall being staged, not a wait for the program
  std::string got;
  char buf[65536];
  for (;;) {
    const ssize_t k = ::read(fds[0], buf, sizeof buf);
    if (k <= 0) break;
    got.append(buf, static_cast<std::size_t>(k));
  }
  ::close(fds[0]);
  const run_result r = finish(dir, pid, setup);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(got.begin(), got.end(), '\n'), 3000) << r.err;
  return r.err;
}

TEST(RunContract, AStallIsOneShortReadableLineAndCountedInTheSummary) {
  const std::string err = stalled_run(false);
  const std::size_t at = err.find("spindle fetch: the event loop was held for ");
  ASSERT_NE(at, std::string::npos) << err;
  const std::string line = err.substr(at, err.find('\n', at) - at);
  EXPECT_LT(line.size(), 200u) << line;
  EXPECT_EQ(line.find('<'), std::string::npos) << "template arguments in: " << line;
  EXPECT_EQ(err.find("spindle: stall"), std::string::npos) << "the library's server-log line: " << err;
  EXPECT_NE(err.find("\nstalls="), std::string::npos) << err;
  const std::string quiet = stalled_run(true);
  EXPECT_EQ(quiet.find("held for"), std::string::npos) << quiet;
  EXPECT_EQ(quiet.find("stalls="), std::string::npos) << quiet;
}

}  // namespace

namespace {

// Issue #16 point 8: with a regular file, the progress line has done/total
// and an ETA from the start (the inputs are counted ahead), not only once
// the reader, held back by the window, has read the last line (which with
// 3,000 inputs is after some 1,960 are done).
TEST(RunContract, ProgressOfARegularFileHasTheTotalEarly) {
  spindle::cli::mock_api api;
  temp_dir dir;
  const std::string urls = dir.file("urls.txt");
  {
    std::ofstream f(urls);
    for (int i = 0; i < 3000; ++i) f << api.base_url() << "/items/" << i << "?delay_ms=5\n";
  }
  const run_result r =
      run(dir, {"fetch", "--progress", "-c", "8", "--urls", urls, "--out", dir.file("out.jsonl")});
  EXPECT_EQ(r.exit_code, 0) << r.err.substr(0, 2000);
  // Frames are separated by "\r"; the earliest with "/3000 " must come while
  // fewer than 1,900 inputs were done.
  long long first_done = -1;
  for (std::size_t at = r.err.find("/3000 "); at != std::string::npos; at = std::string::npos) {
    const std::size_t start = r.err.rfind(']', at);
    if (start == std::string::npos) break;
    const std::size_t pct = r.err.find("% ", start);
    if (pct == std::string::npos || pct > at) break;
    first_done = std::stoll(r.err.substr(pct + 2, at - pct - 2));
  }
  ASSERT_GE(first_done, 0) << "no progress frame with the total: " << r.err.substr(0, 2000);
  EXPECT_LT(first_done, 1900) << "the total appeared only once the input was all read";
}

}  // namespace

namespace {

// Issue #16 point 9: a Slurm array of 3 tasks, each `--shard auto` with
// `--out results-{shard}.jsonl`: merged, exactly one result per input.
TEST(RunContract, ShardsFromASlurmArrayMergeIntoOneResultPerInput) {
  spindle::cli::mock_api api;
  temp_dir dir;
  constexpr std::size_t n = 500;
  const std::string urls = write_urls(dir, api, n);
  std::vector<pid_t> pids;
  std::vector<child_setup> setups(3);
  for (int task = 0; task < 3; ++task) {
    setups[task].env = {{"SLURM_ARRAY_TASK_ID", std::to_string(5 + task)},
                        {"SLURM_ARRAY_TASK_MIN", "5"},
                        {"SLURM_ARRAY_TASK_COUNT", "3"}};
    pids.push_back(start(
        dir, {"fetch", "-q", "--shard", "auto", "--urls", urls, "--out", dir.file("results-{shard}.jsonl")},
        setups[task]));
  }
  for (int task = 0; task < 3; ++task) {
    const run_result r = finish(dir, pids[task], setups[task]);
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  std::string merged;
  for (int k = 0; k < 3; ++k) {
    const std::string part = slurp(dir.file("results-" + std::to_string(k) + ".jsonl"));
    EXPECT_FALSE(part.empty()) << "shard " << k << " wrote nothing";
    merged += part;
  }
  expect_one_result_each(merged, n);
}

}  // namespace
