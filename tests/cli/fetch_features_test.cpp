// `spindle fetch` features of issue #16 point 8 and 9 end to end:
// --ordered, --output-dir with --name, and --shard-by host.

#include <sys/stat.h>

#include <gtest/gtest.h>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cli_support.hpp"
#include "mock_api.hpp"
#include "support/fault_server.hpp"

namespace {

using namespace spindle::cli_test;
namespace fs = std::filesystem;

// The files under `dir` (relative names), temporary ones included.
std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) names.insert(fs::relative(e.path(), dir).string());
  return names;
}

TEST(FetchOrdered, ResultsComeOutInInputOrder) {
  temp_dir dir;
  spindle::cli::mock_api api;
  std::string list;
  // Later inputs finish first; one is no URL, one fails.
  for (int i = 0; i < 40; ++i) {
    if (i == 17) {
      list += "htp:/not-a-url\n";
    } else if (i == 23) {
      list += api.base_url() + "/items/23?fail=404\n";
    } else {
      list += api.base_url() + "/items/" + std::to_string(i) +
              "?delay_ms=" + std::to_string((40 - i) % 7 * 15) + "\n";
    }
  }
  write_file(dir.file("urls.txt"), list);
  run_result r = run(dir, {"fetch", "--urls", dir.file("urls.txt"), "--ordered", "-c", "8", "--no-progress"});
  EXPECT_EQ(r.exit_code, 3) << r.err;  // (two inputs failed)
  auto results = lines_of(r.out);
  ASSERT_EQ(results.size(), 40u) << r.err;
  for (std::size_t i = 0; i < results.size(); ++i) EXPECT_EQ(results[i]["index"].get<std::uint64_t>(), i);
  EXPECT_EQ(results[17]["error"]["kind"], "invalid_url");
  EXPECT_EQ(results[23]["status"], 404);
}

TEST(FetchOrdered, UnorderedRunsAreNotHeldBack) {
  // Without --ordered, a fast later input is written before a slow earlier
  // one (so the ordered test above proves the reordering).
  temp_dir dir;
  spindle::cli::mock_api api;
  run_result r = run(
      dir, {"fetch", api.base_url() + "/items/0?delay_ms=300", api.base_url() + "/items/1", "--no-progress"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto results = lines_of(r.out);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0]["index"], 1);
}

TEST(FetchOutputDir, EachOkBodyIsAFileNamedByIndex) {
  temp_dir dir;
  spindle::cli::mock_api api;
  const std::string out_dir = dir.file("bodies/nested");  // made, parents included
  run_result r = run(dir, {"fetch", api.base_url() + "/items/0", api.base_url() + "/items/1?binary=1",
                           api.base_url() + "/items/2?fail=404", api.base_url() + "/items/3?fail=503",
                           "--output-dir", out_dir, "--retries", "1", "--backoff", "1ms", "--no-progress"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  auto by = by_index(lines_of(r.out));
  ASSERT_EQ(by.size(), 4u);
  EXPECT_EQ(by[0]["path"], out_dir + "/0");
  EXPECT_EQ(slurp(out_dir + "/0"), "{\"id\":0,\"name\":\"item 0\"}");
  EXPECT_EQ(by[1]["path"], out_dir + "/1");
  std::string bytes;
  for (int b = 0; b < 256; ++b) bytes += static_cast<char>(b);
  EXPECT_EQ(slurp(out_dir + "/1"), bytes);
  EXPECT_FALSE(by[0].contains("body"));
  // Failed inputs: no file, no path; their attempts' files are removed.
  EXPECT_FALSE(by[2].contains("path"));
  EXPECT_FALSE(by[3].contains("path"));
  EXPECT_EQ(by[3]["attempts"], 2);
  EXPECT_EQ(files_in(out_dir), (std::set<std::string>{"0", "1"}));  // no temporaries left
}

TEST(FetchOutputDir, NamesFromTheTemplateAndNothingIsOverwritten) {
  temp_dir dir;
  spindle::cli::mock_api api;
  const std::string out_dir = dir.file("saved");
  fs::create_directories(out_dir + "/127.0.0.1");
  write_file(out_dir + "/127.0.0.1/7", "mine");  // a file the user owns
  run_result r = run(
      dir, {"fetch", api.base_url() + "/items/7", api.base_url() + "/items/7?delay_ms=100",
            api.base_url() + "/", "--output-dir", out_dir, "--name", "{host}/{basename}", "--no-progress"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto by = by_index(lines_of(r.out));
  ASSERT_EQ(by.size(), 3u);
  EXPECT_EQ(slurp(out_dir + "/127.0.0.1/7"), "mine");
  // The first to finish takes 7.1, the other 7.2.
  EXPECT_EQ(by[0]["path"], out_dir + "/127.0.0.1/7.1");
  EXPECT_EQ(by[1]["path"], out_dir + "/127.0.0.1/7.2");
  EXPECT_EQ(slurp(out_dir + "/127.0.0.1/7.2"), "{\"id\":7,\"name\":\"item 7\"}");
  EXPECT_EQ(by[2]["path"], out_dir + "/127.0.0.1/index.html");  // no last segment: wget's name
  EXPECT_EQ(slurp(out_dir + "/127.0.0.1/index.html"), "hello");
  EXPECT_EQ(files_in(out_dir).size(), 4u);
}

TEST(FetchOutputDir, ALargeBodyIsStreamedToDiskInBoundedMemory) {
  temp_dir dir;
  spindle::test::fault_server server;
  constexpr std::uint64_t size = 256ull << 20;  // four times the in-memory --max-body default
  // Under ASan, freed memory waits in a quarantine of 256 MiB before reuse:
  // a small quarantine keeps the figure about live memory (other builds
  // ignore the variable), as in CliFetch's memory tests.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string saved = asan != nullptr ? asan : "";
  child_setup small_quarantine;
  small_quarantine.env = {{"ASAN_OPTIONS", saved + (saved.empty() ? "" : ":") + "quarantine_size_mb=4"}};
  run_result r = run(dir,
                     {"fetch", server.base_url() + "/big?bytes=" + std::to_string(size), "--output-dir",
                      dir.file("big"), "--no-progress"},
                     small_quarantine);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto results = lines_of(r.out);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]["bytes"], size);
  struct stat st {};
  ASSERT_EQ(::stat(dir.file("big/0").c_str(), &st), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), size);
  EXPECT_LT(r.max_rss_kb, 64 * 1024) << "the body must not be held in memory";
}

TEST(FetchOutputDir, BadUsesAreUsageErrors) {
  temp_dir dir;
  write_file(dir.file("plain"), "x");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{"--name", "{index}"}, "--name goes with --output-dir"},
      {{"--output-dir", dir.file("d"), "--name", "../{index}"}, "'..'"},
      {{"--output-dir", dir.file("d"), "--name", "/abs/{index}"}, "absolute"},
      {{"--output-dir", dir.file("d"), "--name", "{nope}"}, "unknown field '{nope}'"},
      {{"--output-dir", dir.file("d"), "--body"}, "--body and --output-dir"},
      {{"--output-dir", dir.file("plain")}, "--output-dir"},
  };
  for (const auto& [extra, message] : cases) {
    std::vector<std::string> args{"fetch", "http://127.0.0.1:1/x", "--no-progress"};
    args.insert(args.end(), extra.begin(), extra.end());
    run_result r = run(dir, args);
    EXPECT_EQ(r.exit_code, 2) << extra.back() << ": " << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST(FetchShardByHost, EachHostStaysInOneShardAndTheMergeHasEveryInput) {
  temp_dir dir;
  // Nothing listens on port 1: each input ends at once as a connect error.
  std::string list;
  std::vector<std::string> hosts;
  for (int i = 0; i < 60; ++i) {
    const std::string host = "127.0.0." + std::to_string(1 + i % 12);
    hosts.push_back(host);
    list += (i % 5 == 0 ? "HTTP://" : "http://") + host + ":1/item/" + std::to_string(i) + "\n";
  }
  write_file(dir.file("urls.txt"), list);
  constexpr int shards = 3;
  std::vector<pid_t> pids;
  std::vector<std::unique_ptr<temp_dir>> dirs;
  for (int k = 0; k < shards; ++k) {
    dirs.push_back(std::make_unique<temp_dir>());
    pids.push_back(start(*dirs.back(), {"fetch", "--urls", dir.file("urls.txt"), "--shard",
                                        std::to_string(k) + "/3", "--shard-by", "host", "--retries", "0",
                                        "--out", dir.file("part-{shard}.jsonl"), "--no-progress"}));
  }
  std::vector<json> all;
  std::map<std::string, std::set<int>> shards_of_host;
  std::set<int> busy;
  for (int k = 0; k < shards; ++k) {
    run_result r = finish(*dirs[static_cast<std::size_t>(k)], pids[static_cast<std::size_t>(k)]);
    EXPECT_EQ(r.exit_code, 3) << r.err;
    for (auto& res : lines_of(slurp(dir.file("part-" + std::to_string(k) + ".jsonl")))) {
      shards_of_host[hosts[res["index"].get<std::size_t>()]].insert(k);
      busy.insert(k);
      all.push_back(std::move(res));
    }
  }
  expect_one_result_per_input(all, 60);
  EXPECT_EQ(shards_of_host.size(), 12u);
  for (const auto& [host, in] : shards_of_host) EXPECT_EQ(in.size(), 1u) << host << " is in several shards";
  EXPECT_GE(busy.size(), 2u) << "12 hosts over 3 shards: the hash spreads them";
}

TEST(FetchShardByHost, UnknownModeIsAUsageError) {
  temp_dir dir;
  run_result r = run(dir, {"fetch", "http://127.0.0.1:1/x", "--shard", "0/2", "--shard-by", "path"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--shard-by path: index or host"), std::string::npos) << r.err;
}

}  // namespace
