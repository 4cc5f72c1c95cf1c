#include "cli_support.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>

extern char** environ;

namespace spindle::cli_test {

namespace {

using namespace std::chrono_literals;

// What a failure message shows of a line that may be megabytes long.
std::string excerpt(const std::string& line) {
  constexpr std::size_t shown = 300;
  if (line.size() <= shown) return line;
  return line.substr(0, shown) + "... (" + std::to_string(line.size()) + " bytes)";
}

// `program` as execve needs it: a name without a slash is looked up in PATH
// (as posix_spawnp and the shell do). Empty when not found.
std::string resolve(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  for (;;) {
    const std::size_t colon = dirs.find(':');
    const std::string_view d = dirs.substr(0, colon);
    const std::string candidate = (d.empty() ? std::string(".") : std::string(d)) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) return {};
    dirs.remove_prefix(colon + 1);
  }
}

// What the child reports through its close-on-exec pipe when a step before
// exec fails (nothing arrives when the exec succeeds).
struct spawn_failure {
  int step = 0;
  int error = 0;
};
constexpr const char* spawn_steps[] = {"",     "open stdin",    "open stdout",  "open stderr",
                                       "dup2", "RLIMIT_NOFILE", "RLIMIT_FSIZE", "exec"};

[[noreturn]] void child_fails(int report, int step) {
  const spawn_failure f{step, errno};
  if (::write(report, &f, sizeof f) < 0) {
  }
  ::_exit(127);
}

// The peak resident set of a running process (VmHWM, KiB); 0 when it is gone
// (or a zombie, which has no memory left to report).
long peak_rss_kb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.starts_with("VmHWM:")) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

}  // namespace

temp_dir::temp_dir() {
  char tmpl[] = "/tmp/spindle-cli-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
  path_ = tmpl;
}

temp_dir::~temp_dir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  EXPECT_TRUE(f) << "could not write " << path;
}

pid_t start(const temp_dir& dir, const std::vector<std::string>& args, const child_setup& setup,
            const std::string& program) {
  // Everything the child needs is made here, before fork: from fork to exec
  // the child of a threaded process may only make async-signal-safe calls.
  const std::string shown = program.empty() ? std::string(SPINDLE_CLI_PATH) : program;
  const std::string path = resolve(shown);
  if (path.empty()) {
    ADD_FAILURE() << shown << " not found in PATH";
    return -1;
  }
  std::vector<std::string> all{shown};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> added;
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const std::string_view name = entry.substr(0, entry.find('='));
    const bool changed = std::any_of(setup.env.begin(), setup.env.end(),
                                     [&](const auto& change) { return change.first == name; });
    if (!changed) envp.push_back(*e);
  }
  for (const auto& [name, value] : setup.env) {
    if (value) added.push_back(name + "=" + *value);
  }
  for (auto& a : added) envp.push_back(a.data());
  envp.push_back(nullptr);

  const std::string in = setup.stdin_file.empty() ? "/dev/null" : setup.stdin_file;
  const std::string out = setup.stdout_file.empty() ? dir.file("stdout") : setup.stdout_file;
  const int out_flags = O_WRONLY | O_CREAT | O_CLOEXEC | (setup.stdout_append ? O_APPEND : O_TRUNC);
  const std::string err = dir.file("stderr");
  const bool limit_files = setup.open_files.has_value();
  const rlimit files{setup.open_files.value_or(0), setup.open_files.value_or(0)};
  const bool limit_size = setup.file_size_limit.has_value();
  const rlimit size{setup.file_size_limit.value_or(0), setup.file_size_limit.value_or(0)};
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;

  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return -1;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Descriptors 0, 1 and 2 are opened first in every case, so closing one
    // of them never depends on what this process had open there.
    const int fd0 = setup.stdin_fd >= 0 ? setup.stdin_fd : ::open(in.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd0 < 0) child_fails(report[1], 1);
    const int fd1 = setup.stdout_fd >= 0 ? setup.stdout_fd : ::open(out.c_str(), out_flags, 0644);
    if (fd1 < 0) child_fails(report[1], 2);
    const int fd2 = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd2 < 0) child_fails(report[1], 3);
    if (::dup2(fd0, 0) < 0 || ::dup2(fd1, 1) < 0 || ::dup2(fd2, 2) < 0) child_fails(report[1], 4);
    if (setup.close_stdin) ::close(0);
    if (setup.close_stdout) ::close(1);
    if (setup.close_stderr) ::close(2);
    if (limit_files && ::setrlimit(RLIMIT_NOFILE, &files) != 0) child_fails(report[1], 5);
    if (limit_size) {
      // Beyond the limit a write fails with EFBIG instead of raising SIGXFSZ
      // (an ignored signal stays ignored across exec).
      ::sigaction(SIGXFSZ, &ignore, nullptr);
      if (::setrlimit(RLIMIT_FSIZE, &size) != 0) child_fails(report[1], 6);
    }
    // Nothing else of ours reaches the program (the report pipe stays open
    // until the exec closes it).
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    ::execve(path.c_str(), argv.data(), envp.data());
    child_fails(report[1], 7);
  }
  ::close(report[1]);
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    ::close(report[0]);
    return -1;
  }
  // Wait for the exec (as posix_spawn does): end of file, or why it failed.
  spawn_failure f;
  ssize_t got = 0;
  do {
    got = ::read(report[0], &f, sizeof f);
  } while (got < 0 && errno == EINTR);
  ::close(report[0]);
  if (got == static_cast<ssize_t>(sizeof f)) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const bool known = f.step > 0 && f.step < static_cast<int>(std::size(spawn_steps));
    ADD_FAILURE() << "starting " << shown << ": " << (known ? spawn_steps[f.step] : "?") << ": "
                  << std::strerror(f.error);
    return -1;
  }
  return pid;
}

// The peak RSS is read from /proc while the child runs: wait4's ru_maxrss is
// no good, because a child shares our memory until its exec, and the kernel
// counts our own peak (large under ASan) as the child's.
run_result finish(const temp_dir& dir, pid_t pid, const child_setup& setup, std::chrono::seconds limit) {
  run_result r;
  if (pid <= 0) return r;
  const auto until = std::chrono::steady_clock::now() + limit;
  int status = 0;
  for (;;) {
    // VmHWM only grows: the last reading is the peak so far.
    r.max_rss_kb = std::max(r.max_rss_kb, peak_rss_kb(pid));
    const pid_t got = ::wait4(pid, &status, WNOHANG, nullptr);
    if (got == pid) break;
    if (got < 0 && errno != EINTR) {
      ADD_FAILURE() << "wait4 " << pid << ": " << std::strerror(errno);
      return r;
    }
    if (std::chrono::steady_clock::now() > until) {
      ::kill(pid, SIGKILL);
      while (::wait4(pid, &status, 0, nullptr) < 0 && errno == EINTR) {
      }
      ADD_FAILURE() << "spindle did not finish within " << limit.count() << " s";
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.exit_code = 128 + WTERMSIG(status);
  }
  if (setup.stdout_file.empty() && setup.stdout_fd < 0) r.out = slurp(dir.file("stdout"));
  r.err = slurp(dir.file("stderr"));
  return r;
}

run_result run(const temp_dir& dir, const std::vector<std::string>& args, const child_setup& setup) {
  return finish(dir, start(dir, args, setup), setup);
}

run_result run(const temp_dir& dir, const std::vector<std::string>& args, const child_setup& setup,
               std::chrono::seconds limit) {
  return finish(dir, start(dir, args, setup), setup, limit);
}

std::vector<json> lines_of(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto j = json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << excerpt(line);
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

std::vector<json> results_of(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto j = json::parse(line, nullptr, false);
    const bool result = j.is_object() && j.contains("index");
    EXPECT_TRUE(result) << "not a result: " << excerpt(line);
    if (result) out.push_back(std::move(j));
  }
  return out;
}

namespace {

// The result's index, or nullopt (and the test fails) when it has none.
std::optional<std::uint64_t> index_of(const json& r) {
  if (r.is_object() && r.contains("index") && r["index"].is_number_unsigned()) {
    return r["index"].get<std::uint64_t>();
  }
  ADD_FAILURE() << "not a result (no index): " << excerpt(r.dump());
  return std::nullopt;
}

}  // namespace

std::map<std::uint64_t, json> by_index(const std::vector<json>& results) {
  std::map<std::uint64_t, json> out;
  for (const auto& r : results) {
    const auto index = index_of(r);
    if (index) {
      EXPECT_TRUE(out.emplace(*index, r).second) << "duplicate index " << *index;
    }
  }
  return out;
}

void expect_one_result_per_input(const std::vector<json>& results, std::size_t n) {
  std::vector<unsigned> seen(n, 0);
  for (const auto& r : results) {
    const auto index = index_of(r);
    if (!index) continue;
    if (*index >= n) {
      ADD_FAILURE() << "index out of range [0, " << n << "): " << excerpt(r.dump());
      continue;
    }
    EXPECT_EQ(++seen[*index], 1u) << "duplicate index " << *index;
  }
  EXPECT_EQ(results.size(), n);
  const auto missing = std::count(seen.begin(), seen.end(), 0u);
  EXPECT_EQ(missing, 0) << "inputs without a result, the first: "
                        << (std::find(seen.begin(), seen.end(), 0u) - seen.begin());
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace spindle::cli_test
