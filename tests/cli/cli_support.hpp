#pragma once
// What the CLI's end-to-end tests share: running the `spindle` binary as a
// child process (bounded in time, with its stdin, stdout, descriptors,
// limits and environment set up as a test needs), temporary directories and
// files, and reading its JSON Lines results.

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace spindle::cli_test {

using json = nlohmann::json;

struct run_result {
  int exit_code = -1;   ///< the exit status; 128 + N after signal N
  std::string out;      ///< stdout (empty when it went elsewhere)
  std::string err;      ///< stderr
  long max_rss_kb = 0;  ///< the child's own peak (VmHWM) while it ran
};

/// A directory under /tmp, removed with everything in it.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

[[nodiscard]] std::string slurp(const std::string& path);
void write_file(const std::string& path, const std::string& text);

/// How the child starts. Defaults: stdin /dev/null, stdout and stderr to
/// files in the run's directory (read into run_result).
struct child_setup {
  std::string stdin_file{};                 ///< empty: /dev/null
  int stdin_fd = -1;                        ///< >= 0: this descriptor (a pipe's end) instead
  std::string stdout_file{};                ///< empty: captured into run_result::out
  int stdout_fd = -1;                       ///< >= 0: this descriptor (a pipe's end) instead; not captured
  bool stdout_append = false;               ///< open stdout_file with O_APPEND
  bool close_stdin = false;                 ///< start with descriptor 0 closed
  bool close_stdout = false;                ///< start with descriptor 1 closed
  bool close_stderr = false;                ///< start with descriptor 2 closed
  std::optional<rlim_t> file_size_limit{};  ///< RLIMIT_FSIZE (SIGXFSZ ignored: writes fail with EFBIG)
  std::optional<rlim_t> open_files{};       ///< RLIMIT_NOFILE (soft and hard)
  /// Environment changes: a value sets the variable, nullopt unsets it.
  std::vector<std::pair<std::string, std::optional<std::string>>> env{};
};

/// Starts `spindle args...` (or `program`, when not empty).
[[nodiscard]] pid_t start(const temp_dir& dir, const std::vector<std::string>& args,
                          const child_setup& setup = {}, const std::string& program = {});
/// Waits for the child, at most `limit` (then it is killed and the test
/// fails), recording its peak memory; reads what it wrote.
[[nodiscard]] run_result finish(const temp_dir& dir, pid_t pid, const child_setup& setup = {},
                                std::chrono::seconds limit = std::chrono::seconds(120));
/// start() then finish().
[[nodiscard]] run_result run(const temp_dir& dir, const std::vector<std::string>& args,
                             const child_setup& setup = {});
/// start() then finish(), bounded by `limit`.
[[nodiscard]] run_result run(const temp_dir& dir, const std::vector<std::string>& args,
                             const child_setup& setup, std::chrono::seconds limit);

/// The JSON objects of JSON Lines text (a line that is not JSON fails the test).
[[nodiscard]] std::vector<json> lines_of(const std::string& text);
/// The results of JSON Lines text: each line a JSON object with an "index"
/// (any other line fails the test and is left out).
[[nodiscard]] std::vector<json> results_of(const std::string& text);
/// By "index" (a repeated index fails the test).
[[nodiscard]] std::map<std::uint64_t, json> by_index(const std::vector<json>& results);
/// Exactly one result for each index in [0, n), nothing else.
void expect_one_result_per_input(const std::vector<json>& results, std::size_t n);
/// The first line of `text`.
[[nodiscard]] std::string first_line(const std::string& text);

}  // namespace spindle::cli_test
