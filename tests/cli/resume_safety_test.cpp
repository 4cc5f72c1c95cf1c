// Issue #16, point 3: nothing a user owns is destroyed. The `spindle` binary
// end to end (a child process against the demo's mock API on 127.0.0.1):
// --resume refuses a file that is not a results file and leaves it byte for
// byte as it was; it keeps every line it does not understand; --out naming
// the --urls file (under any name) is a usage error before anything is
// opened for writing; a rewrite that cannot be written exits 1, leaves the
// results file intact and no temporary file behind.

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "cli_support.hpp"
#include "mock_api.hpp"

namespace {

using namespace std::chrono_literals;
using namespace spindle::cli_test;

// The names in `dir` (the child's stdout and stderr excepted).
std::set<std::string> names_in(const temp_dir& dir) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    const std::string n = e.path().filename().string();
    if (n != "stdout" && n != "stderr") out.insert(n);
  }
  return out;
}

// Runs `spindle args...`, bounded: a hang fails the test after 60 s.
run_result run60(const temp_dir& dir, const std::vector<std::string>& args, const child_setup& setup = {}) {
  return run(dir, args, setup, 60s);
}

std::size_t line_count(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

// What identifies a file's content and identity: its bytes, inode, mode, mtime.
struct file_state {
  std::string bytes;
  ino_t inode = 0;
  mode_t mode = 0;
  timespec mtime{};
};

file_state state_of(const std::string& path) {
  file_state s;
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  s.bytes = slurp(path);
  s.inode = st.st_ino;
  s.mode = st.st_mode;
  s.mtime = st.st_mtim;
  return s;
}

void expect_untouched(const std::string& path, const file_state& before) {
  const file_state now = state_of(path);
  EXPECT_EQ(now.bytes, before.bytes) << path << " changed";
  EXPECT_EQ(now.inode, before.inode) << path << " was replaced";
  EXPECT_EQ(now.mode, before.mode) << path;
  EXPECT_TRUE(now.mtime.tv_sec == before.mtime.tv_sec && now.mtime.tv_nsec == before.mtime.tv_nsec)
      << path << " was written to";
}

std::string url_list(const spindle::cli::mock_api& api, int n) {
  std::string list;
  for (int i = 0; i < n; ++i) list += api.base_url() + "/items/" + std::to_string(i) + "\n";
  return list;
}

std::set<std::uint64_t> indices_of(const std::vector<json>& results) {
  std::set<std::uint64_t> out;
  for (const auto& r : results) EXPECT_TRUE(out.insert(r["index"].get<std::uint64_t>()).second) << r.dump();
  return out;
}

const std::string done0 =
    R"({"index":0,"url":"http://127.0.0.1:9/items/0","ok":true,"status":200,"attempts":1,"elapsed_ms":1.250,"bytes":26})";
const std::string cancelled1 =
    R"({"index":1,"url":"http://127.0.0.1:9/items/1","ok":false,"status":null,"attempts":1,"elapsed_ms":3.000,"bytes":0,"error":{"kind":"cancelled","message":"stopped"}})";
const std::string failed3 =
    R"({"index":3,"url":"http://127.0.0.1:9/items/3","ok":false,"status":500,"attempts":3,"elapsed_ms":9.000,"bytes":0,"error":{"kind":"http_status","message":"HTTP 500"}})";

TEST(ResumeSafety, AFileThatIsNotAResultsFileIsRefusedAndLeftByteForByte) {
  spindle::cli::mock_api api;
  const std::vector<std::string> contents{
      "shopping list\n- milk\n- eggs\n",
      "notes without a final newline",
      "# a comment\n\nhttp://example.com/\n",
      "{\"title\":\"json, but not results\"}\n{\"index\":0}\n",  // "ok" missing
      "[{\"index\":0,\"ok\":true}]\n",                           // not an object per line
      "{\"in",                                                   // too little to be a torn result
  };
  for (const auto& text : contents) {
    temp_dir dir;
    const std::string notes = dir.file("notes.txt");
    write_file(notes, text);
    ::chmod(notes.c_str(), 0640);
    const file_state before = state_of(notes);
    const std::set<std::string> names = names_in(dir);
    const run_result r =
        run60(dir, {"fetch", "--out", notes, "--resume", "--no-progress", api.base_url() + "/items/1"});
    EXPECT_EQ(r.exit_code, 2) << text << "\n" << r.err;
    EXPECT_EQ(line_count(r.err), 1u) << r.err;
    EXPECT_NE(r.err.find("not a spindle results file"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(notes), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("unchanged"), std::string::npos) << r.err;
    expect_untouched(notes, before);
    EXPECT_EQ(names_in(dir), names) << "no file is created beside it";
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  EXPECT_EQ(api.requests(), 0u) << "a refusal starts nothing";
}

TEST(ResumeSafety, AnOutThatIsNotARegularFileIsRefused) {
  temp_dir dir;
  ASSERT_EQ(::mkdir(dir.file("sub").c_str(), 0755), 0);
  const run_result r = run60(dir, {"fetch", "--out", dir.file("sub"), "--resume", "http://127.0.0.1:9/"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("not a regular file"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::is_empty(dir.file("sub")));
}

// Only cancelled results (redone), an exact repeat of a kept line and the
// torn last line are removed; every other line stays, in order, byte for
// byte. The file is rewritten through its symlink with its mode.
TEST(ResumeSafety, EveryLineItDoesNotUnderstandIsKept) {
  temp_dir dir;
  spindle::cli::mock_api api;
  write_file(dir.file("urls.txt"), url_list(api, 5));
  const std::string repeat0_differs =
      R"({"index":0,"url":"http://127.0.0.1:9/items/0","ok":true,"status":203,"attempts":1,"elapsed_ms":2.000,"bytes":26})";
  const std::string kept =
      "# results of the nightly run\n" + done0.substr(0, done0.size() - 1) + ",\"reviewed\":\"by hand\"}\n" +
      "{\"note\":\"index 2 looked odd\",\"index\":\"two\"}\n" + "\n" + repeat0_differs + "\n" +
      "not JSON at all, with a CR\r\n" + failed3 + "\n" + "{\"index\":-1,\"ok\":true}\n";
  // The same lines with the ones resume may remove in between.
  const std::string file =
      "# results of the nightly run\n" + done0.substr(0, done0.size() - 1) + ",\"reviewed\":\"by hand\"}\n" +
      cancelled1 + "\n" + "{\"note\":\"index 2 looked odd\",\"index\":\"two\"}\n" + "\n" +
      done0.substr(0, done0.size() - 1) + ",\"reviewed\":\"by hand\"}\n" + repeat0_differs + "\n" +
      "not JSON at all, with a CR\r\n" + failed3 + "\n" + "{\"index\":-1,\"ok\":true}\n" +
      R"({"index":2,"url":"http://127.0.0.1:9/items/2","ok":tr)";
  write_file(dir.file("real.jsonl"), file);
  ::chmod(dir.file("real.jsonl").c_str(), 0600);
  ASSERT_EQ(::symlink("real.jsonl", dir.file("results.jsonl").c_str()), 0);

  const run_result r = run60(dir, {"fetch", "--urls", dir.file("urls.txt"), "--out",
                                   dir.file("results.jsonl"), "--resume", "--no-progress"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("kept 4 lines that are not results and 1 repeated results"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("resume: 2 inputs already had a final result"), std::string::npos) << r.err;
  const std::string now = slurp(dir.file("results.jsonl"));
  ASSERT_TRUE(now.starts_with(kept)) << now;
  const auto added = results_of(now.substr(kept.size()));
  EXPECT_EQ(indices_of(added), (std::set<std::uint64_t>{1, 2, 4}));
  for (const auto& a : added) EXPECT_TRUE(a["ok"].get<bool>()) << a.dump();
  EXPECT_EQ(api.requests(), 3u) << "inputs 0 and 3 have final results";

  struct stat st {};
  ASSERT_EQ(::lstat(dir.file("results.jsonl").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the symlink is still a symlink";
  ASSERT_EQ(::stat(dir.file("real.jsonl").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the mode is kept";
  EXPECT_EQ(names_in(dir), (std::set<std::string>{"real.jsonl", "results.jsonl", "urls.txt"}));

  // Resuming the completed file changes nothing.
  const file_state complete = state_of(dir.file("real.jsonl"));
  const run_result again = run60(dir, {"fetch", "--urls", dir.file("urls.txt"), "--out",
                                       dir.file("results.jsonl"), "--resume", "--no-progress"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  expect_untouched(dir.file("real.jsonl"), complete);
  EXPECT_EQ(api.requests(), 3u);
}

// A last line without a newline that is not a torn result is the user's:
// kept, and given its newline so the appended results do not join it.
TEST(ResumeSafety, AnUnterminatedLastLineThatIsNotATornResultIsKept) {
  temp_dir dir;
  spindle::cli::mock_api api;
  write_file(dir.file("urls.txt"), url_list(api, 2));
  write_file(dir.file("out.jsonl"), done0 + "\nchecked on Monday");
  const run_result r = run60(dir, {"fetch", "--urls", dir.file("urls.txt"), "--out", dir.file("out.jsonl"),
                                   "--resume", "--no-progress"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string now = slurp(dir.file("out.jsonl"));
  const std::string kept = done0 + "\nchecked on Monday\n";
  ASSERT_TRUE(now.starts_with(kept)) << now;
  EXPECT_EQ(indices_of(results_of(now.substr(kept.size()))), (std::set<std::uint64_t>{1}));
}

// A file killed during its first write holds only a torn result: a
// results file; the torn line is redone.
TEST(ResumeSafety, MissingEmptyBlankOrTornOnlyOutStartsAFreshRun) {
  spindle::cli::mock_api api;
  const std::vector<std::pair<std::string, std::string>> cases{
      // {content (absent for "missing"), what stays before the new results}
      {"missing", ""},
      {"", ""},
      {"\n\n", "\n\n"},
      {R"({"index":0,"url":"http://127.0.0.1:9/items/0","ok":tr)", ""},
  };
  for (const auto& [content, stays] : cases) {
    temp_dir dir;
    write_file(dir.file("urls.txt"), url_list(api, 3));
    if (content != "missing") write_file(dir.file("out.jsonl"), content);
    const run_result r = run60(dir, {"fetch", "--urls", dir.file("urls.txt"), "--out", dir.file("out.jsonl"),
                                     "--resume", "--no-progress"});
    EXPECT_EQ(r.exit_code, 0) << content << ": " << r.err;
    const std::string now = slurp(dir.file("out.jsonl"));
    ASSERT_TRUE(now.starts_with(stays)) << now;
    EXPECT_EQ(indices_of(results_of(now.substr(stays.size()))), (std::set<std::uint64_t>{0, 1, 2}))
        << content;
    EXPECT_EQ(names_in(dir), (std::set<std::string>{"out.jsonl", "urls.txt"}));
  }
}

// --out naming the --urls file, under any name, is refused before anything
// is opened for writing: the list keeps its bytes, nothing is requested.
TEST(ResumeSafety, OutNamingTheUrlsFileIsAUsageError) {
  temp_dir dir;
  spindle::cli::mock_api api;
  const std::string list = dir.file("urls.txt");
  write_file(list, url_list(api, 3));
  ASSERT_EQ(::symlink("urls.txt", dir.file("link.txt").c_str()), 0);
  ASSERT_EQ(::link(list.c_str(), dir.file("hard.txt").c_str()), 0);
  ASSERT_EQ(::mkdir(dir.file("sub").c_str(), 0755), 0);
  const file_state before = state_of(list);
  for (const std::string& out : {list, dir.file("link.txt"), dir.file("hard.txt"),
                                 dir.path() + "/sub/../urls.txt", dir.path() + "/./urls.txt"}) {
    for (const bool resume : {false, true}) {
      std::vector<std::string> args{"fetch", "--urls", list, "--out", out, "--no-progress"};
      if (resume) args.push_back("--resume");
      const run_result r = run60(dir, args);
      EXPECT_EQ(r.exit_code, 2) << out << (resume ? " --resume" : "") << ": " << r.err;
      EXPECT_EQ(line_count(r.err), 1u) << r.err;
      EXPECT_NE(r.err.find("--out " + out + " is the same file as --urls " + list), std::string::npos)
          << r.err;
      expect_untouched(list, before);
    }
  }
  // The list on stdin (--urls -), the same file as --out.
  {
    const run_result r =
        run60(dir, {"fetch", "--urls", "-", "--out", dir.file("link.txt")}, {.stdin_file = list});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("is the same file as --urls stdin"), std::string::npos) << r.err;
    expect_untouched(list, before);
  }
  // stdout appended to the list (the shell's >>): it would grow as it is read.
  {
    const run_result r =
        run60(dir, {"fetch", "--urls", dir.file("hard.txt")}, {.stdout_file = list, .stdout_append = true});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("stdout is the same file as --urls"), std::string::npos) << r.err;
    expect_untouched(list, before);
  }
  EXPECT_EQ(api.requests(), 0u);
  // A different file with the same content is fine.
  write_file(dir.file("copy.txt"), before.bytes);
  const run_result ok = run60(dir, {"fetch", "--urls", list, "--out", dir.file("copy.txt"), "--no-progress"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(indices_of(results_of(slurp(dir.file("copy.txt")))), (std::set<std::uint64_t>{0, 1, 2}));
}

// The rewrite cannot be written. A full disk is simulated without root or
// a mount: the child runs with RLIMIT_FSIZE below the rewrite's size and
// SIGXFSZ ignored, so writing the temporary file fails with EFBIG in the
// same write path a full disk fails with ENOSPC.
TEST(ResumeSafety, ARewriteThatCannotBeWrittenExitsOneAndLeavesTheFileIntact) {
  temp_dir dir;
  spindle::cli::mock_api api;
  constexpr int n = 400;
  write_file(dir.file("urls.txt"), url_list(api, n));
  std::string file;
  for (int i = 0; i < n; ++i) {
    const std::string u = api.base_url() + "/items/" + std::to_string(i);
    if (i == 7) {
      file +=
          R"({"index":7,"url":")" + u +
          R"(","ok":false,"status":null,"attempts":1,"elapsed_ms":3.000,"bytes":0,"error":{"kind":"cancelled","message":"stopped"}})"
          "\n";
    } else {
      file += R"({"index":)" + std::to_string(i) + R"(,"url":")" + u +
              R"(","ok":true,"status":200,"attempts":1,"elapsed_ms":1.000,"bytes":26})"
              "\n";
    }
  }
  ASSERT_GT(file.size(), 2u * 16384);
  write_file(dir.file("out.jsonl"), file);
  const file_state before = state_of(dir.file("out.jsonl"));
  const run_result r = run(
      dir,
      {"fetch", "--urls", dir.file("urls.txt"), "--out", dir.file("out.jsonl"), "--resume", "--no-progress"},
      {.file_size_limit = 16384});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find(std::strerror(EFBIG)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("is unchanged"), std::string::npos) << r.err;
  expect_untouched(dir.file("out.jsonl"), before);
  EXPECT_EQ(names_in(dir), (std::set<std::string>{"out.jsonl", "urls.txt"})) << "no *.resume-tmp* is left";
  EXPECT_EQ(api.requests(), 0u);

  // Without the limit the same resume completes the set.
  const run_result ok = run60(dir, {"fetch", "--urls", dir.file("urls.txt"), "--out", dir.file("out.jsonl"),
                                    "--resume", "--no-progress"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  const auto all = results_of(slurp(dir.file("out.jsonl")));
  EXPECT_EQ(all.size(), static_cast<std::size_t>(n));
  EXPECT_EQ(indices_of(all).size(), static_cast<std::size_t>(n));
  EXPECT_EQ(api.requests(), 1u);
}

}  // namespace
