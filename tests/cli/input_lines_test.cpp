// Issue #16, point 2: one input per line, always. The `spindle` binary end
// to end (a child process against a fault_server on 127.0.0.1): a line over
// the 64 KiB limit is exactly one `invalid_url` result and is never
// requested, later indices do not shift, a 10 MB line is not buffered, a
// UTF-8 BOM at the start of a file or of stdin is skipped, and scheme-less
// `host[:port]/path` inputs are fetched as http:// (curl's rule).

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cli_support.hpp"
#include "line_reader.hpp"
#include "support/fault_server.hpp"

namespace {

using namespace std::chrono_literals;
using namespace spindle::cli_test;

constexpr std::size_t limit = 64 * 1024;  // docs/cli.md: the longest line taken as a URL

// ---- what the tests share ----------------------------------------------------------

std::string kind_of(const json& r) {
  return r.contains("error") ? r["error"]["kind"].get<std::string>() : "";
}
std::string message_of(const json& r) {
  return r.contains("error") ? r["error"]["message"].get<std::string>() : "";
}

void expect_ok(const json& r, const std::string& url) {
  EXPECT_EQ(r["url"], url);
  EXPECT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["status"], 200) << r.dump();
  EXPECT_EQ(r["attempts"], 1) << r.dump();
}

void expect_too_long(const json& r, std::size_t bytes) {
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(kind_of(r), "invalid_url") << r.dump().substr(0, 500);
  EXPECT_EQ(message_of(r), "line too long: " + std::to_string(bytes) + " bytes");
  EXPECT_EQ(r["attempts"], 0);
  EXPECT_TRUE(r["status"].is_null());
}

// A line of exactly `bytes` bytes that is a URL of the server's /ok: the
// padding is a fragment, which is never sent (the request stays small
// whatever the line's length).
std::string ok_line(const std::string& base, std::size_t bytes) {
  std::string line = base + "/ok#";
  line.append(bytes - line.size(), 'f');
  return line;
}

// A line of `bytes` bytes that would be a request to the server's /ok if
// it were cut into pieces and its head requested.
std::string long_line(const std::string& base, std::size_t bytes) {
  std::string line = base + "/ok?pad=";
  line.append(bytes - line.size(), 'p');
  return line;
}

const std::vector<std::string> quiet{"--no-progress", "-q", "--retries", "0", "--timeout", "5s"};

std::vector<std::string> fetch_args(std::vector<std::string> more) {
  std::vector<std::string> args{"fetch"};
  args.insert(args.end(), quiet.begin(), quiet.end());
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// ---- the tests ---------------------------------------------------------------------

// The issue's report: a 1.2 MB line then one good URL gave 3 results (the
// head requested, the good URL at index 2).
TEST(InputLines, LongLineIsOneInvalidInputAndNeverRequested) {
  temp_dir dir;
  spindle::test::fault_server server;
  const std::string b = server.base_url();
  write_file(dir.file("urls.txt"), long_line(b, 1'200'000) + "\n" + b + "/ok\n");
  const run_result r = run(dir, fetch_args({"--urls", dir.file("urls.txt")}));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  const auto results = by_index(lines_of(r.out));
  ASSERT_EQ(results.size(), 2u) << r.out.substr(0, 2000);
  ASSERT_TRUE(results.contains(0) && results.contains(1));
  expect_too_long(results.at(0), 1'200'000);
  // `url` keeps the line's first 256 bytes, not the whole line.
  EXPECT_EQ(results.at(0)["url"], long_line(b, 1'200'000).substr(0, 256));
  expect_ok(results.at(1), b + "/ok");
  EXPECT_EQ(server.requests_served(), 1u);
  const auto received = server.received();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].target, "/ok");
  EXPECT_TRUE(r.err.starts_with("ok=1 failed=1 ")) << r.err;
}

// A 10 MB line is counted as it streams by, not kept: the peak RSS of the
// run stays within 4 MiB of a run over a two-line file (buffering the line
// would add 10 MB at least).
TEST(InputLines, TenMegabyteLineInBoundedMemory) {
  temp_dir dir;
  spindle::test::fault_server server;
  const std::string b = server.base_url();
  constexpr std::size_t huge = 10 * 1000 * 1000;
  // Each run ends with a request that takes 300 ms, so the harness's
  // sampling of VmHWM (which only grows) sees the process after it has
  // read everything: without it a quick run could exit between samples
  // and its peak be read as the forked child's before exec.
  const std::string slow = "/delay?ms=300";
  write_file(dir.file("small.txt"), "http://127.0.0.1:1/\n" + b + "/ok\n" + b + slow + "\n");
  {
    std::ofstream f(dir.file("huge.txt"), std::ios::binary);
    f << long_line(b, huge) << "\n" << b << "/ok\n" << b << slow << "\n";
  }
  const run_result small = run(dir, fetch_args({"--urls", dir.file("small.txt")}));
  const run_result large = run(dir, fetch_args({"--urls", dir.file("huge.txt")}));
  EXPECT_EQ(small.exit_code, 3) << small.err;
  EXPECT_EQ(large.exit_code, 3) << large.err;
  const auto results = by_index(lines_of(large.out));
  ASSERT_EQ(results.size(), 3u) << large.out.substr(0, 2000);
  ASSERT_TRUE(results.contains(0) && results.contains(1) && results.contains(2));
  expect_too_long(results.at(0), huge);
  expect_ok(results.at(1), b + "/ok");
  expect_ok(results.at(2), b + slow);
  // One /ok and one delay from each run; nothing of the long line.
  EXPECT_EQ(server.requests_served(), 4u);
  for (const auto& req : server.received())
    EXPECT_TRUE(req.target == "/ok" || req.target == slow) << req.target;
  ASSERT_GT(small.max_rss_kb, 0) << "the peak RSS was never read";
  ASSERT_GT(large.max_rss_kb, 0) << "the peak RSS was never read";
  EXPECT_LT(large.max_rss_kb - small.max_rss_kb, 4 * 1024)
      << "peak RSS " << small.max_rss_kb << " KiB for two short lines, " << large.max_rss_kb
      << " KiB with a 10 MB line";
}

// The limit is 64 KiB, the line ending (LF or CRLF) not counted: a line of
// exactly the limit is a URL and is requested, one byte more is too long.
TEST(InputLines, LineOfTheLimitIsAUrlOneByteMoreIsTooLong) {
  temp_dir dir;
  spindle::test::fault_server server;
  const std::string b = server.base_url();
  const std::string at_limit = ok_line(b, limit);
  const std::string over = ok_line(b, limit + 1);
  const std::string at_limit_crlf = ok_line(b, limit);
  write_file(dir.file("urls.txt"), at_limit + "\n" + over + "\n" + at_limit_crlf + "\r\n" + over + "\r\n" +
                                       b + "/ok\n" + over);  // the last one without a newline
  const run_result r = run(dir, fetch_args({"--urls", dir.file("urls.txt")}));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  const auto results = by_index(lines_of(r.out));
  ASSERT_EQ(results.size(), 6u) << r.err;
  for (std::uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(results.contains(i)) << i;
  expect_ok(results.at(0), at_limit);
  EXPECT_EQ(results.at(0)["final_url"], b + "/ok");
  expect_too_long(results.at(1), limit + 1);
  expect_ok(results.at(2), at_limit_crlf);
  expect_too_long(results.at(3), limit + 1);
  expect_ok(results.at(4), b + "/ok");
  expect_too_long(results.at(5), limit + 1);
  EXPECT_EQ(server.requests_served(), 3u);
}

// Blank lines and # comments take no index, whatever their length; a line
// over the limit takes one, like any input, so --shard and --resume see the
// same indices as before.
TEST(InputLines, LongCommentsAndBlankLinesTakeNoIndexLongLinesTakeOne) {
  temp_dir dir;
  spindle::test::fault_server server;
  const std::string b = server.base_url();
  const std::string list = "# a comment\n\n" + std::string(limit + 10, ' ') + "\n  # " +
                           std::string(200'000, 'c') + "\n" + long_line(b, 100'000) + "\n" + b + "/ok?i=1\n" +
                           b + "/ok?i=2\n" + b + "/ok?i=3\n";
  write_file(dir.file("urls.txt"), list);
  const run_result all = run(dir, fetch_args({"--urls", dir.file("urls.txt")}));
  EXPECT_EQ(all.exit_code, 3) << all.err;
  const auto results = by_index(lines_of(all.out));
  ASSERT_EQ(results.size(), 4u) << all.out.substr(0, 2000);
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(results.contains(i)) << i;
  expect_too_long(results.at(0), 100'000);
  for (std::uint64_t i = 1; i < 4; ++i) expect_ok(results.at(i), b + "/ok?i=" + std::to_string(i));

  // Shard 1/2: indices 1 and 3 (the long line is index 0, in shard 0).
  const run_result odd = run(dir, fetch_args({"--urls", dir.file("urls.txt"), "--shard", "1/2"}));
  EXPECT_EQ(odd.exit_code, 0) << odd.err;
  const auto odd_results = by_index(lines_of(odd.out));
  ASSERT_EQ(odd_results.size(), 2u) << odd.out;
  ASSERT_TRUE(odd_results.contains(1) && odd_results.contains(3));
  expect_ok(odd_results.at(1), b + "/ok?i=1");
  expect_ok(odd_results.at(3), b + "/ok?i=3");
  const run_result even = run(dir, fetch_args({"--urls", dir.file("urls.txt"), "--shard", "0/2"}));
  EXPECT_EQ(even.exit_code, 3) << even.err;
  const auto even_results = by_index(lines_of(even.out));
  ASSERT_EQ(even_results.size(), 2u) << even.out.substr(0, 2000);
  ASSERT_TRUE(even_results.contains(0) && even_results.contains(2));
  expect_too_long(even_results.at(0), 100'000);
  expect_ok(even_results.at(2), b + "/ok?i=2");
}

TEST(InputLines, ByteOrderMarkAtTheStartOfAFileIsSkipped) {
  temp_dir dir;
  spindle::test::fault_server server;
  const std::string b = server.base_url();
  write_file(dir.file("urls.txt"), "\xEF\xBB\xBF" + b + "/ok?i=0\r\n" + b + "/ok?i=1\r\n");
  const run_result r = run(dir, fetch_args({"--urls", dir.file("urls.txt")}));
  EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
  const auto results = by_index(lines_of(r.out));
  ASSERT_EQ(results.size(), 2u) << r.out;
  ASSERT_TRUE(results.contains(0) && results.contains(1));
  expect_ok(results.at(0), b + "/ok?i=0");
  expect_ok(results.at(1), b + "/ok?i=1");

  // A BOM first, then a comment: still a comment.
  write_file(dir.file("commented.txt"), "\xEF\xBB\xBF# urls\n" + b + "/ok\n");
  const run_result c = run(dir, fetch_args({"--urls", dir.file("commented.txt")}));
  EXPECT_EQ(c.exit_code, 0) << c.err << c.out;
  const auto c_results = by_index(lines_of(c.out));
  ASSERT_EQ(c_results.size(), 1u) << c.out;
  ASSERT_TRUE(c_results.contains(0));
  expect_ok(c_results.at(0), b + "/ok");
}

// From stdin, a pipe that delivers the BOM one byte at a time, the rest
// afterwards: the BOM is recognised all the same. A file of only part of
// a BOM is a line of its own (one invalid input).
TEST(InputLines, ByteOrderMarkOnStdinIsSkipped) {
  temp_dir dir;
  spindle::test::fault_server server;
  const std::string b = server.base_url();
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  const pid_t pid = start(dir, fetch_args({"--urls", "-"}), {.stdin_fd = p[0]});
  ::close(p[0]);
  const int w = p[1];
  const std::string rest = b + "/ok?i=0\n" + b + "/ok?i=1\n";
  for (const std::string_view piece : {std::string_view("\xEF"), std::string_view("\xBB"),
                                       std::string_view("\xBF"), std::string_view(rest)}) {
    EXPECT_EQ(::write(w, piece.data(), piece.size()), static_cast<ssize_t>(piece.size()));
    std::this_thread::sleep_for(20ms);  // separate reads, most likely (not asserted)
  }
  ::close(w);
  const run_result r = finish(dir, pid);
  EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
  const auto results = by_index(lines_of(r.out));
  ASSERT_EQ(results.size(), 2u) << r.out;
  ASSERT_TRUE(results.contains(0) && results.contains(1));
  expect_ok(results.at(0), b + "/ok?i=0");
  expect_ok(results.at(1), b + "/ok?i=1");

  // Stdin from a regular file too.
  write_file(dir.file("bom.txt"), "\xEF\xBB\xBF" + b + "/ok\n");
  const run_result f = run(dir, fetch_args({"--urls", "-"}), {.stdin_file = dir.file("bom.txt")});
  EXPECT_EQ(f.exit_code, 0) << f.err << f.out;
  const auto f_results = by_index(lines_of(f.out));
  ASSERT_EQ(f_results.size(), 1u) << f.out;
  ASSERT_TRUE(f_results.contains(0));
  expect_ok(f_results.at(0), b + "/ok");

  write_file(dir.file("half.txt"), "\xEF\xBB");
  const run_result h = run(dir, fetch_args({"--urls", "-"}), {.stdin_file = dir.file("half.txt")});
  EXPECT_EQ(h.exit_code, 3) << h.err << h.out;
  const auto h_results = by_index(lines_of(h.out));
  ASSERT_EQ(h_results.size(), 1u) << h.out;
  ASSERT_TRUE(h_results.contains(0));
  EXPECT_EQ(kind_of(h_results.at(0)), "invalid_url");
}

// curl's rule: an input without a scheme ("letters:/" at its start) is
// fetched as http:// + input, from the file and from the arguments alike;
// `url` stays the input as given, `final_url` shows the URL fetched.
TEST(InputLines, SchemeLessInputsAreFetchedAsHttp) {
  temp_dir dir;
  spindle::test::fault_server server;
  const std::string hostport = "127.0.0.1:" + std::to_string(server.port());
  const std::string b = server.base_url();
  ASSERT_EQ(b, "http://" + hostport);
  write_file(dir.file("urls.txt"), hostport + "/ok?i=1\n" + "localhost:" + std::to_string(server.port()) +
                                       "/ok?i=2\n" + hostport + "\n" + "example.invalid/x\n");
  const run_result r = run(dir, fetch_args({hostport + "/ok?i=0", "--urls", dir.file("urls.txt")}));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  const auto results = by_index(lines_of(r.out));
  ASSERT_EQ(results.size(), 5u) << r.out;
  for (std::uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(results.contains(i)) << i;
  expect_ok(results.at(0), hostport + "/ok?i=0");
  EXPECT_EQ(results.at(0)["final_url"], b + "/ok?i=0");
  expect_ok(results.at(1), hostport + "/ok?i=1");
  EXPECT_EQ(results.at(1)["final_url"], b + "/ok?i=1");
  expect_ok(results.at(2), "localhost:" + std::to_string(server.port()) + "/ok?i=2");
  // host:port alone: the path "/" (the server answers 404 "not found").
  EXPECT_EQ(results.at(3)["url"], hostport);
  EXPECT_EQ(results.at(3)["status"], 404);
  EXPECT_EQ(kind_of(results.at(3)), "http_status");
  EXPECT_EQ(results.at(3)["final_url"], b + "/");
  // A name: looked up (".invalid" never resolves, RFC 6761), not refused as a URL.
  EXPECT_EQ(kind_of(results.at(4)), "dns") << results.at(4).dump();
  EXPECT_EQ(results.at(4)["attempts"], 1);
  std::vector<std::string> targets;
  for (const auto& req : server.received()) targets.push_back(req.target);
  std::sort(targets.begin(), targets.end());
  EXPECT_EQ(targets, (std::vector<std::string>{"/", "/ok?i=0", "/ok?i=1", "/ok?i=2"}));
}

// What is neither a URL with a scheme nor a host[:port]/path is refused
// (invalid_url, never requested) with a message that says why, and says
// when http:// was assumed.
TEST(InputLines, NotAHostIsAnInvalidUrlWithAClearMessage) {
  temp_dir dir;
  spindle::test::fault_server server;
  const std::string hostport = "127.0.0.1:" + std::to_string(server.port());
  write_file(dir.file("urls.txt"),
             "not a host/x\n/just/a/path\n" + hostport + ":99/x\nhtp:/x\nhttp:/x\n" + "ftp://example.com/\n");
  const run_result r = run(dir, fetch_args({"--urls", dir.file("urls.txt")}));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  const auto results = by_index(lines_of(r.out));
  ASSERT_EQ(results.size(), 6u) << r.out;
  const std::vector<std::string> messages{
      "invalid URL 'http://not a host/x': contains a space or control character (no scheme given, so http:// "
      "was assumed)",
      "invalid URL 'http:///just/a/path': empty host (no scheme given, so http:// was assumed)",
      "invalid URL 'http://" + hostport +
          ":99/x': bad character ':' in host (no scheme given, so http:// was "
          "assumed)",
      "invalid URL 'htp:/x': unsupported scheme 'htp'",
      "invalid URL 'http:/x': expected '//' after 'http:'",
      "invalid URL 'ftp://example.com/': unsupported scheme 'ftp'",
  };
  for (std::uint64_t i = 0; i < messages.size(); ++i) {
    ASSERT_TRUE(results.contains(i)) << i;
    EXPECT_EQ(kind_of(results.at(i)), "invalid_url") << results.at(i).dump();
    EXPECT_EQ(message_of(results.at(i)), messages[i]);
    EXPECT_EQ(results.at(i)["attempts"], 0);
  }
  EXPECT_EQ(server.requests_served(), 0u);
}

// ---- the reader, in process ---------------------------------------------------------

// Lines of many lengths around the limit (LF or CRLF, blank padding, long
// comments), read in 64 KiB reads that cut them anywhere and handed out in
// batches of 3: each line is exactly what a simple model of the rule says.
TEST(InputLines, ReaderKeepsOneInputPerLineAcrossReads) {
  using spindle::cli::input_line;
  using spindle::cli::line_reader;
  static_assert(line_reader::max_line == limit);
  temp_dir dir;
  std::string text;
  std::vector<input_line> expected;
  std::uint64_t lines = 0;
  std::uint32_t seed = 12345;
  auto next = [&seed] {
    seed = seed * 1664525u + 1013904223u;
    return seed >> 8;
  };
  const std::vector<std::size_t> lengths{0,         1,         2,       255,       256,       257,
                                         limit - 2, limit - 1, limit,   limit + 1, limit + 2, 70'000,
                                         131'071,   131'072,   131'073, 200'000,   3 * limit};
  for (int i = 0; i < 300; ++i) {
    const std::size_t length = lengths[next() % lengths.size()];
    const bool crlf = next() % 2 == 0;
    const unsigned shape = next() % 8;  // 0: a comment, 1: blank, 2: leading blanks, else a URL-like line
    std::string line;
    if (shape == 0) {
      line = "# " + std::string(length, 'c');
    } else if (shape == 1) {
      line = std::string(length, ' ');
    } else if (shape == 2) {
      line = "  \t" + std::string(length, 'u') + " ";
    } else {
      line = "http://h/" + std::to_string(i) + "?" + std::string(length, 'q');
    }
    text += line + (crlf ? "\r\n" : "\n");
    ++lines;
    // The model: trimmed, blank and # skipped; over the limit: the length and the first 256 bytes.
    std::string_view trimmed = line;
    while (!trimmed.empty() && (trimmed.front() == ' ' || trimmed.front() == '\t')) trimmed.remove_prefix(1);
    while (!trimmed.empty() && (trimmed.back() == ' ' || trimmed.back() == '\t')) trimmed.remove_suffix(1);
    if (trimmed.empty() || trimmed.front() == '#') continue;
    input_line in;
    if (line.size() > limit) {
      in.too_long = line.size();
      in.text = std::string(trimmed.substr(0, line_reader::kept_prefix));
    } else {
      in.text = std::string(trimmed);
    }
    expected.push_back(in);
  }
  text += "http://h/last-without-newline";
  ++lines;
  expected.push_back(input_line{"http://h/last-without-newline", 0});
  write_file(dir.file("lines.txt"), text);

  const int fd = ::open(dir.file("lines.txt").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  line_reader reader(fd, "lines.txt");
  std::vector<input_line> got;
  for (int calls = 0; calls < 10'000; ++calls) {
    std::vector<input_line> batch;
    const bool more = reader.read_batch(batch, 3);
    EXPECT_LE(batch.size(), 3u);
    for (auto& b : batch) got.push_back(std::move(b));
    if (!more) break;
  }
  EXPECT_EQ(reader.error(), 0);
  EXPECT_EQ(reader.line(), lines);
  ASSERT_EQ(got.size(), expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].too_long, expected[i].too_long) << "input " << i;
    EXPECT_EQ(got[i].text, expected[i].text) << "input " << i;
  }
}

}  // namespace
