// The `spindle` binary's manners, end to end (issue #16, point 8):
// `--version`, help that names value types, a did-you-mean for a mistyped
// command, stdin/stdout/stderr closed at start, and the demo's scene titles
// named like the README's trap table. The binary runs as a child process;
// servers are on 127.0.0.1 only.

#include <gtest/gtest.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "cli_support.hpp"
#include "mock_api.hpp"
#include "parse.hpp"

namespace {

using namespace spindle::cli_test;

// The repository's top directory, from this file's path (tests/cli/).
std::filesystem::path source_dir() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
}

// ---- --version -----------------------------------------------------------------

TEST(CliUx, VersionPrintsTheProjectVersion) {
  const std::string cmake = slurp((source_dir() / "CMakeLists.txt").string());
  std::smatch m;
  ASSERT_TRUE(std::regex_search(cmake, m, std::regex(R"(project\(spindle VERSION ([0-9.]+))")))
      << "no project(spindle VERSION ...) in the top-level CMakeLists.txt";
  temp_dir dir;
  run_result r = run(dir, {"--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "spindle " + m[1].str() + "\n");
}

// ---- help names value types ---------------------------------------------------------

TEST(CliUx, HelpNamesValueTypesNotText) {
  temp_dir dir;
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"fetch", "--help"}, {"demo", "--help"}, {"serve-mock", "--help"}}) {
    run_result r = run(dir, args);
    EXPECT_EQ(r.exit_code, 0) << args.front() << ": " << r.err;
    EXPECT_FALSE(std::regex_search(r.out, std::regex(R"(\b(TEXT|INT|UINT|FLOAT)\b)")))
        << "a bare CLI11 type name in `spindle " << args.front() << " " << args.back() << "`:\n"
        << r.out;
  }
  run_result r = run(dir, {"fetch", "--help"});
  for (const char* want :
       {"url URL", "--urls FILE", "-c,--concurrency N", "--per-host N", "-t,--timeout DUR", "--deadline DUR",
        "-r,--retries N", "--backoff DUR", "-o,--out FILE", "--max-body SIZE", "-H,--header 'NAME: VALUE'",
        "-X,--method METHOD", "-d,--data DATA", "--rate RATE", "--shard K/N", "--max-redirects N"})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << " missing from:\n" << r.out;
  // The usage line names the program, not the path it was started by.
  EXPECT_NE(r.out.find("Usage: spindle fetch"), std::string::npos) << r.out;
  run_result demo = run(dir, {"demo", "--help"});
  EXPECT_NE(demo.out.find("scene SCENE"), std::string::npos) << demo.out;
}

// ---- mistyped commands and options --------------------------------------------------

TEST(CliUx, UnknownCommandSuggestsTheNearest) {
  temp_dir dir;
  const std::map<std::string, std::string> typos = {
      {"fecth", "fetch"}, {"fetc", "fetch"}, {"Fetch", "fetch"}, {"dmeo", "demo"}, {"demos", "demo"}};
  for (const auto& [typed, meant] : typos) {
    run_result r = run(dir, {typed, "http://127.0.0.1:1/"});
    EXPECT_EQ(r.exit_code, 2) << typed;
    EXPECT_NE(r.err.find("unknown command '" + typed + "'; did you mean '" + meant + "'?"), std::string::npos)
        << typed << ": " << r.err;
    EXPECT_EQ(r.out, "") << typed;
  }
  run_result far = run(dir, {"xyzzy", "http://127.0.0.1:1/"});
  EXPECT_EQ(far.exit_code, 2);
  EXPECT_NE(far.err.find("unknown command 'xyzzy'"), std::string::npos) << far.err;
  EXPECT_EQ(far.err.find("did you mean"), std::string::npos) << far.err;
  EXPECT_NE(far.err.find("fetch"), std::string::npos) << far.err;

  run_result none = run(dir, {});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("a command is required: fetch or demo"), std::string::npos) << none.err;

  run_result option = run(dir, {"--bogus"});
  EXPECT_EQ(option.exit_code, 2);
  EXPECT_NE(option.err.find("unknown option '--bogus'"), std::string::npos) << option.err;
}

TEST(CliUx, UnknownLongOptionSuggestsTheNearest) {
  temp_dir dir;
  run_result r = run(dir, {"fetch", "--concurency", "8", "http://127.0.0.1:1/"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--concurency"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("did you mean '--concurrency'?"), std::string::npos) << r.err;
  run_result eq = run(dir, {"fetch", "--retires=3", "http://127.0.0.1:1/"});
  EXPECT_EQ(eq.exit_code, 2);
  EXPECT_NE(eq.err.find("did you mean '--retries'?"), std::string::npos) << eq.err;
  run_result far = run(dir, {"fetch", "--zzz", "http://127.0.0.1:1/"});
  EXPECT_EQ(far.exit_code, 2);
  EXPECT_EQ(far.err.find("did you mean"), std::string::npos) << far.err;
}

TEST(CliUx, ClosestNameAcceptsTyposOnly) {
  using spindle::cli::closest_name;
  const std::vector<std::string> commands = {"fetch", "demo"};
  EXPECT_EQ(closest_name("fecth", commands), "fetch");  // two letters swapped
  EXPECT_EQ(closest_name("fetvh", commands), "fetch");
  EXPECT_EQ(closest_name("DEMO", commands), "demo");
  EXPECT_EQ(closest_name("dem", commands), "demo");
  EXPECT_EQ(closest_name("", commands), "");
  EXPECT_EQ(closest_name("xyzzy", commands), "");
  EXPECT_EQ(closest_name("de", commands), "");  // too short to be a typo of anything
  EXPECT_EQ(closest_name("bad", {"body", "data"}), "");
}

// ---- stdin, stdout, stderr closed at start -------------------------------------------

TEST(CliUx, ClosedStdoutIsAUsageErrorNamingStdout) {
  temp_dir dir;
  run_result r = run(dir, {"fetch", "http://127.0.0.1:1/"}, {.close_stdout = true});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("stdout is closed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--out FILE"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("Invalid argument"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("ok="), std::string::npos) << "no run should have started:\n" << r.err;

  run_result dash = run(dir, {"fetch", "--out", "-", "http://127.0.0.1:1/"}, {.close_stdout = true});
  EXPECT_EQ(dash.exit_code, 2) << dash.err;
  EXPECT_NE(dash.err.find("stdout is closed"), std::string::npos) << dash.err;

  run_result demo = run(dir, {"demo", "portal"}, {.close_stdout = true});
  EXPECT_EQ(demo.exit_code, 2) << demo.err;
  EXPECT_NE(demo.err.find("stdout is closed"), std::string::npos) << demo.err;
}

TEST(CliUx, ClosedStdoutWithOutFileStillFetches) {
  spindle::cli::mock_api api;
  temp_dir dir;
  const std::string out = dir.file("results.jsonl");
  const std::string url = api.base_url() + "/items/7";
  run_result r = run(dir, {"fetch", "--no-progress", "--out", out, url}, {.close_stdout = true});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto results = lines_of(slurp(out));
  ASSERT_EQ(results.size(), 1u) << slurp(out);
  EXPECT_EQ(results[0]["index"], 0);
  EXPECT_EQ(results[0]["url"], url);
  EXPECT_EQ(results[0]["ok"], true) << results[0].dump();
  EXPECT_NE(r.err.find("ok=1 failed=0"), std::string::npos) << r.err;
}

TEST(CliUx, ClosedStdinWithUrlsDashIsAUsageError) {
  temp_dir dir;
  run_result r = run(dir, {"fetch", "--urls", "-"}, {.close_stdin = true});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--urls -: stdin is closed"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(CliUx, ClosedStdinWithoutUrlsDashStillFetches) {
  spindle::cli::mock_api api;
  temp_dir dir;
  run_result r = run(dir, {"fetch", "--no-progress", api.base_url() + "/items/1"}, {.close_stdin = true});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto results = lines_of(r.out);
  ASSERT_EQ(results.size(), 1u) << r.out;
  EXPECT_EQ(results[0]["ok"], true) << results[0].dump();
}

TEST(CliUx, ClosedStderrDoesNotDisturbTheResults) {
  spindle::cli::mock_api api;
  temp_dir dir;
  run_result r =
      run(dir, {"fetch", "--no-progress", api.base_url() + "/items/1", api.base_url() + "/items/2"},
          {.close_stderr = true});
  EXPECT_EQ(r.exit_code, 0);
  auto results = lines_of(r.out);
  ASSERT_EQ(results.size(), 2u) << r.out;
  for (const auto& res : results) EXPECT_EQ(res["ok"], true) << res.dump();
}

// ---- the demo's scenes are named like the README's traps -----------------------------

struct readme_trap {
  std::string name;  // the bold name at the start of the trap cell
  std::string demo;  // the demo cell, e.g. "`spindle demo pools`", or ""
};

// Rows "| N | **name**... | ... | demo |" of README.md's trap table, by N.
std::map<int, readme_trap> readme_traps() {
  std::ifstream f(source_dir() / "README.md");
  std::map<int, readme_trap> rows;
  std::string line;
  bool in_section = false;
  const std::regex row(R"(^\| (\d+) \| \*\*([^*]+)\*\*.*\|\s*([^|]*?)\s*\|$)");
  while (std::getline(f, line)) {
    if (line.starts_with("## ")) in_section = line == "## The asyncio traps and what closes them";
    std::smatch m;
    if (in_section && std::regex_match(line, m, row)) rows[std::stoi(m[1].str())] = {m[2].str(), m[3].str()};
  }
  return rows;
}

TEST(CliUx, DemoScenesAreNamedLikeTheReadmeTraps) {
  const auto traps = readme_traps();
  ASSERT_GE(traps.size(), 5u) << "no numbered trap table in README.md";
  temp_dir dir;
  run_result list = run(dir, {"demo", "--list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  run_result help = run(dir, {"demo", "--help"});
  ASSERT_EQ(help.exit_code, 0) << help.err;
  // "  sequential  Trap 1, sequential fetching: ..."
  const std::regex scene_line(R"(^  (\S+) +(Trap (\d+), ([^:]+): .*)$)");
  std::istringstream in(list.out);
  std::string line;
  std::map<std::string, int> scenes;
  while (std::getline(in, line)) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, scene_line)) << "a scene not titled 'Trap N, name: ...': " << line;
    const std::string scene = m[1].str(), title = m[2].str(), name = m[4].str();
    const int n = std::stoi(m[3].str());
    scenes[scene] = n;
    ASSERT_TRUE(traps.contains(n)) << scene << " claims trap " << n << ", which README.md's table lacks";
    EXPECT_EQ(traps.at(n).name, name) << "scene " << scene << " vs README trap " << n;
    EXPECT_EQ(traps.at(n).demo, "`spindle demo " + scene + "`") << "README trap " << n;
    EXPECT_NE(help.out.find(title), std::string::npos) << "`demo --help` lacks: " << title;
  }
  EXPECT_EQ(scenes.size(), 5u) << list.out;
  // Every README row that names a scene names one that exists, with its number.
  for (const auto& [n, trap] : traps) {
    if (trap.demo.empty()) continue;
    std::smatch m;
    ASSERT_TRUE(std::regex_match(trap.demo, m, std::regex(R"(`spindle demo (\S+)`)"))) << trap.demo;
    ASSERT_TRUE(scenes.contains(m[1].str())) << "README trap " << n << " names no scene: " << trap.demo;
    EXPECT_EQ(scenes.at(m[1].str()), n);
  }
}

TEST(CliUx, DemoSceneHeaderCarriesTheTrapTitle) {
  temp_dir dir;
  run_result r = run(dir, {"demo", "portal"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("\n== Trap 5, one loop, many threads: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[portal]"), std::string::npos) << r.out;
}

}  // namespace
