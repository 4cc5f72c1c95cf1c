// `spindle fetch` features of issue #16 point 8 and 9 end to end:
// --ordered, --output-dir with --name, and --shard-by host; and of issue
// #17 point 5: --loops N (the limits held across the loops).

#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_support.hpp"
#include "mock_api.hpp"
#include "spindle/http/background_server.hpp"
#include "spindle/sleep.hpp"
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

// With --loops, the loops save through one store: every ok body is a file,
// the failed ones leave none, and a name several loops want is taken once
// each (7, 7.1, 7.2, ...), never overwritten.
TEST(FetchOutputDir, SeveralLoopsSaveEveryBodyAndShareTheNames) {
  temp_dir dir;
  spindle::cli::mock_api api;
  const std::string out_dir = dir.file("saved");
  std::string urls;
  for (int i = 0; i < 60; ++i) urls += api.base_url() + "/items/" + std::to_string(i) + "\n";
  for (int i = 0; i < 12; ++i) urls += api.base_url() + "/items/7?copy=" + std::to_string(i) + "\n";
  urls += api.base_url() + "/items/99?fail=404\n";
  write_file(dir.file("urls.txt"), urls);
  run_result r =
      run(dir, {"fetch", "--urls", dir.file("urls.txt"), "--loops", "3", "-c", "12", "--output-dir", out_dir,
                "--name", "{basename}", "--retries", "0", "--no-progress"});
  EXPECT_EQ(r.exit_code, 3) << r.err;  // the 404
  auto by = by_index(lines_of(r.out));
  ASSERT_EQ(by.size(), 73u) << r.err;
  std::set<std::string> paths;
  for (std::size_t i = 0; i < 72; ++i) {
    ASSERT_EQ(by[i]["ok"], true) << by[i].dump();
    const std::string path = by[i]["path"];
    EXPECT_TRUE(paths.insert(path).second) << "two results name " << path;
    const std::string id = i < 60 ? std::to_string(i) : "7";
    EXPECT_EQ(slurp(path), "{\"id\":" + id + ",\"name\":\"item " + id + "\"}") << path;
  }
  EXPECT_FALSE(by[72].contains("path"));
  // 60 + 12 files: "7" and the 12 copies as 7.1 ... 7.12; no temporaries.
  std::set<std::string> expected;
  for (int i = 0; i < 60; ++i) expected.insert(std::to_string(i));
  for (int i = 1; i <= 12; ++i) expected.insert("7." + std::to_string(i));
  EXPECT_EQ(files_in(out_dir), expected);
  EXPECT_NE(r.err.find("loops=3"), std::string::npos) << r.err;
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

// ---- --loops N ------------------------------------------------------------------------

// A server on a thread of its own that counts the requests in flight (the
// most at once) and keeps each request's start time: /sleep/N answers after
// N ms, anything else at once.
class counting_server {
 public:
  counting_server()
      : server_([this](spindle::http::request& req) -> spindle::task<spindle::http::response> {
          const auto start = std::chrono::steady_clock::now();
          {
            std::lock_guard<std::mutex> lock(m_);
            starts_.push_back(start);
            most_ = std::max(most_, ++now_);
          }
          spindle::http::response r;
          r.status = 200;
          r.body = "hello";
          if (req.target.starts_with("/sleep/")) {
            const int ms = std::min(std::stoi(req.target.substr(7)), 5000);
            co_await spindle::sleep_for(std::chrono::milliseconds(ms));
          }
          {
            std::lock_guard<std::mutex> lock(m_);
            --now_;
            ++served_;
          }
          co_return r;
        }) {}
  [[nodiscard]] std::string url(const std::string& path) const { return server_.base_url() + path; }
  [[nodiscard]] std::size_t most() const {
    std::lock_guard<std::mutex> lock(m_);
    return most_;
  }
  [[nodiscard]] std::size_t served() const {
    std::lock_guard<std::mutex> lock(m_);
    return served_;
  }
  [[nodiscard]] std::vector<std::chrono::steady_clock::time_point> starts() const {
    std::lock_guard<std::mutex> lock(m_);
    return starts_;
  }

 private:
  mutable std::mutex m_;
  std::size_t now_ = 0, most_ = 0, served_ = 0;
  std::vector<std::chrono::steady_clock::time_point> starts_;
  spindle::http::background_server server_;  // (last: stopped before the counters go)
};

// The summary's "loops=N inputs per loop: a b ..." as numbers.
std::vector<std::uint64_t> inputs_per_loop(const std::string& err) {
  std::vector<std::uint64_t> counts;
  const std::string tag = "inputs per loop:";
  const auto at = err.find(tag);
  if (at == std::string::npos) return counts;
  std::istringstream in(err.substr(at + tag.size(), err.find('\n', at) - at - tag.size()));
  for (std::uint64_t n = 0; in >> n;) counts.push_back(n);
  return counts;
}

std::string lines_of_urls(const std::vector<std::string>& urls) {
  std::string text;
  for (const auto& u : urls) text += u + "\n";
  return text;
}

// urls.txt: `n` requests that each take 100 ms (a run to cut short).
void write_slow_urls(const temp_dir& dir, counting_server& server, std::size_t n) {
  std::vector<std::string> urls;
  for (std::size_t i = 0; i < n; ++i) urls.push_back(server.url("/sleep/100"));
  write_file(dir.file("urls.txt"), lines_of_urls(urls));
}

TEST(FetchLoops, EveryInputGetsOneResultAcrossTheLoops) {
  temp_dir dir;
  counting_server server;
  constexpr std::size_t n = 600;
  std::vector<std::string> urls;
  for (std::size_t i = 0; i < n; ++i) urls.push_back(server.url(i % 3 == 0 ? "/sleep/2" : "/hello"));
  write_file(dir.file("urls.txt"), lines_of_urls(urls));
  std::size_t served_before = 0;
  for (const char* loops : {"2", "4"}) {
    run_result r =
        run(dir, {"fetch", "--urls", dir.file("urls.txt"), "--loops", loops, "-c", "16", "--no-progress"});
    EXPECT_EQ(r.exit_code, 0) << loops << ": " << r.err;
    auto results = lines_of(r.out);
    expect_one_result_per_input(results, n);
    for (const auto& res : results) EXPECT_TRUE(res["ok"].get<bool>()) << res.dump();
    EXPECT_EQ(server.served() - served_before, n) << "one request per input";
    served_before = server.served();
    EXPECT_TRUE(first_line(r.err).starts_with("ok=600 failed=0")) << r.err;
    const auto per_loop = inputs_per_loop(r.err);
    EXPECT_EQ(per_loop.size(), std::stoul(loops)) << r.err;
    std::uint64_t sum = 0;
    for (auto c : per_loop) sum += c;
    EXPECT_EQ(sum, n) << r.err;
  }
}

TEST(FetchLoops, PerHostLimitHoldsAcrossTheLoops) {
  temp_dir dir;
  counting_server server;
  std::vector<std::string> urls;
  for (int i = 0; i < 48; ++i) urls.push_back(server.url("/sleep/15"));
  write_file(dir.file("urls.txt"), lines_of_urls(urls));
  run_result r = run(dir, {"fetch", "--urls", dir.file("urls.txt"), "--loops", "4", "--per-host", "2", "-c",
                           "32", "--no-progress"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  expect_one_result_per_input(lines_of(r.out), 48);
  EXPECT_EQ(server.served(), 48u);
  // No loop takes more than its window and its read-ahead (8 + 16 + 4 of
  // 48): several loops fetched, and per loop the limit would let up to
  // 4 × 2 through at once.
  const auto per_loop = inputs_per_loop(r.err);
  ASSERT_EQ(per_loop.size(), 4u) << r.err;
  EXPECT_GE(std::count_if(per_loop.begin(), per_loop.end(), [](std::uint64_t c) { return c > 0; }), 2)
      << r.err;
  EXPECT_LE(server.most(), 2u);
  EXPECT_EQ(server.most(), 2u) << "32 in the window: two at once were always waiting";
}

TEST(FetchLoops, RateHoldsAcrossTheLoops) {
  temp_dir dir;
  counting_server server;
  constexpr int n = 45;
  std::vector<std::string> urls;
  for (int i = 0; i < n; ++i) urls.push_back(server.url("/hello"));
  write_file(dir.file("urls.txt"), lines_of_urls(urls));
  // 50/s with a burst of 5: per loop it would be 4 × that.
  run_result r = run(dir, {"fetch", "--urls", dir.file("urls.txt"), "--loops", "4", "--rate", "50/s", "-c",
                           "32", "--no-progress"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  expect_one_result_per_input(lines_of(r.out), n);
  auto starts = server.starts();
  ASSERT_EQ(starts.size(), static_cast<std::size_t>(n));
  std::sort(starts.begin(), starts.end());
  // In any 200 ms: at most 50 × 0.2 + the burst of 5, and some slack for
  // scheduling (a per-loop limit would allow about 4 times as many).
  const auto window = std::chrono::milliseconds(200);
  std::size_t most = 0;
  for (std::size_t i = 0, j = 0; i < starts.size(); ++i) {
    while (starts[i] - starts[j] >= window) ++j;
    most = std::max(most, i - j + 1);
  }
  EXPECT_LE(most, 18u);
  const auto per_loop = inputs_per_loop(r.err);
  ASSERT_EQ(per_loop.size(), 4u) << r.err;
  EXPECT_GE(std::count_if(per_loop.begin(), per_loop.end(), [](std::uint64_t c) { return c > 0; }), 2)
      << r.err;
  // The whole run: at least (45 - 5 - 3) / 50 s between the first and the last start.
  EXPECT_GE(starts.back() - starts.front(), std::chrono::milliseconds(740));
}

TEST(FetchLoops, OrderedGivesInputOrderAcrossTheLoops) {
  temp_dir dir;
  counting_server server;
  std::vector<std::string> urls;
  for (int i = 0; i < 80; ++i) {
    if (i == 31) {
      urls.push_back("htp:/not-a-url");
    } else {
      urls.push_back(server.url("/sleep/" + std::to_string((80 - i) % 9 * 4)));  // later ones often first
    }
  }
  write_file(dir.file("urls.txt"), lines_of_urls(urls));
  run_result r = run(dir, {"fetch", "--urls", dir.file("urls.txt"), "--loops", "2", "--ordered", "-c", "8",
                           "--no-progress"});
  EXPECT_EQ(r.exit_code, 3) << r.err;  // (one input is no URL)
  auto results = lines_of(r.out);
  ASSERT_EQ(results.size(), 80u) << r.err;
  for (std::size_t i = 0; i < results.size(); ++i) EXPECT_EQ(results[i]["index"].get<std::uint64_t>(), i);
  EXPECT_EQ(results[31]["error"]["kind"], "invalid_url");
}

TEST(FetchLoops, ABadCountIsAUsageError) {
  temp_dir dir;
  for (const char* bad : {"0", "65", "-1", "two", "1.5", ""}) {
    run_result r = run(dir, {"fetch", "http://127.0.0.1:1/x", "--loops", bad});
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("--loops"), std::string::npos) << bad << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << bad;
  }
}

TEST(FetchLoops, TheDeadlineCutsEveryLoopAndLosesNothing) {
  temp_dir dir;
  counting_server server;
  constexpr std::size_t n = 400;
  write_slow_urls(dir, server, n);
  // 400 × 100 ms, 8 at a time: 5 s; cut at 350 ms.
  run_result r = run(dir, {"fetch", "--urls", dir.file("urls.txt"), "--loops", "4", "-c", "8", "--deadline",
                           "350ms", "--no-progress"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  auto results = lines_of(r.out);
  expect_one_result_per_input(results, n);
  std::size_t ok = 0, cancelled = 0;
  for (const auto& res : results) {
    if (res["ok"].get<bool>()) {
      ++ok;
    } else {
      EXPECT_EQ(res["error"]["kind"], "cancelled") << res.dump();
      ++cancelled;
    }
  }
  EXPECT_GT(ok, 0u);
  EXPECT_LE(ok, 40u) << "at most 8 at once, 100 ms each, for 350 ms";
  EXPECT_EQ(ok + cancelled, n);
  EXPECT_NE(r.err.find("stopped early"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cancelled="), std::string::npos) << r.err;
}

TEST(FetchLoops, SigintStopsEveryLoopAndEachInputReadHasAResult) {
  temp_dir dir;
  counting_server server;
  constexpr std::size_t n = 400;
  write_slow_urls(dir, server, n);
  const std::string out = dir.file("results.jsonl");
  pid_t pid = start(dir, {"fetch", "--urls", dir.file("urls.txt"), "--loops", "3", "-c", "12", "--out", out,
                          "--no-progress"});
  auto lines_now = [&] {
    const std::string text = slurp(out);
    return std::count(text.begin(), text.end(), '\n');
  };
  for (int i = 0; i < 3000 && lines_now() < 12; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ::kill(pid, SIGINT);
  run_result r = finish(dir, pid);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  auto results = lines_of(slurp(out));
  // The inputs were handed out in order: those read are a prefix of the
  // list, and each has exactly one result.
  ASSERT_FALSE(results.empty());
  ASSERT_LT(results.size(), n) << "the run was stopped early";
  expect_one_result_per_input(results, results.size());
  std::size_t cancelled = 0;
  for (const auto& res : results) {
    if (!res["ok"].get<bool>()) {
      EXPECT_EQ(res["error"]["kind"], "cancelled") << res.dump();
      ++cancelled;
    }
  }
  EXPECT_GT(cancelled, 0u) << "the requests in flight on every loop end as cancelled";
  // The summary counts every loop's results.
  EXPECT_NE(r.err.find("ok=" + std::to_string(results.size() - cancelled) +
                       " failed=" + std::to_string(cancelled) + " "),
            std::string::npos)
      << results.size() << " results, " << cancelled << " cancelled; " << r.err;
}

}  // namespace
