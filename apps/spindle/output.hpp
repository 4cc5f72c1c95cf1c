#pragma once
// The fetch's output side: one JSON line per result, the resume scan of an
// earlier output file, and the latency histogram of the summary.

#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "spindle/event.hpp"

#include "spindle/http/fetch.hpp"

namespace spindle::cli {

/// One input's final result: the library's (spindle/http/fetch.hpp).
using http::fetch_result;

/// Which optional fields a result line has.
struct line_fields {
  bool body = false;     ///< --body: "body" for ok results and failed ones with a body
  bool headers = false;  ///< --include-headers: "headers" when there was a response
};

/// Appends `s` as a JSON string (quoted, escaped; invalid UTF-8 bytes become U+FFFD).
void append_json_string(std::string& out, std::string_view s);
/// True when `s` is valid UTF-8 without NUL bytes.
[[nodiscard]] bool is_text(std::string_view s) noexcept;
/// Standard base64 with padding.
[[nodiscard]] std::string base64(std::string_view s);
/// What the progress bar shows.
struct progress_counts {
  std::uint64_t ok = 0, failed = 0;
  std::uint64_t read = 0;  ///< inputs read so far (all of them once input_done)
  std::size_t in_flight = 0;
  bool input_done = false;
  double secs = 0;  ///< since the start
  /// The inputs in all, counted ahead of the reading (a regular file); 0:
  /// not known yet (then the bar waits for input_done).
  std::uint64_t total = 0;
};
/// The progress bar's line, from "\r\x1b[K" (return, clear the line): a bar
/// with the share done and an ETA once the total is known (counted ahead,
/// or the input all read), counts before.
[[nodiscard]] std::string progress_line(const progress_counts& c);

/// `ms` with exactly three decimals ("12.346"), rounded to the microsecond.
void append_millis(std::string& out, double ms);
/// The result as one JSON object and a newline.
void append_result_line(std::string& out, const fetch_result& r, line_fields fields = {});

/// Result lines, written in batches: add() appends and sets `pending`; the
/// fetch's flusher task writes the batch once the loop's ready tasks have
/// run (so a line is written before the loop next waits for I/O), and
/// large batches are written at once. A write error is kept, not thrown:
/// from then on nothing more is written, and every result not written
/// (the rest of the failed batch, a line cut off in the middle, and every
/// later add()) counts as lost.
class result_writer {
 public:
  explicit result_writer(int fd, line_fields fields = {}) : fd_(fd), fields_(fields) {}
  void add(const fetch_result& r);
  void flush() noexcept;
  /// The first write error (an errno value), 0 while none.
  [[nodiscard]] int error() const noexcept { return error_; }
  /// Result lines written completely.
  [[nodiscard]] std::uint64_t written() const noexcept { return written_; }
  /// Result lines that could not be written (after an error()).
  [[nodiscard]] std::uint64_t lost() const noexcept { return lost_; }
  event pending{"fetch output"};

 private:
  int fd_;
  line_fields fields_;
  std::string buf_;
  std::uint64_t buffered_ = 0;  // lines in buf_
  std::uint64_t written_ = 0, lost_ = 0;
  int error_ = 0;
};

/// What an earlier output file already holds, for --resume (docs/cli.md,
/// "Resume", has the rules).
struct resume_scan {
  std::vector<bool> done;           ///< by index: a final result (anything but cancelled)
  std::uint64_t final_results = 0;  ///< result lines kept, one per index in `done`
  std::uint64_t dropped = 0;        ///< lines removed: cancelled, identical duplicates, the torn tail
  std::uint64_t kept_other = 0;     ///< non-blank lines kept that are not usable results (left as they are)
  std::uint64_t conflicting = 0;    ///< further, different final results for a done index (kept)
  bool truncated_tail = false;      ///< the last line had no newline (a crash mid-write)
  bool rewritten = false;           ///< the file was replaced by its rewrite
  [[nodiscard]] bool has(std::uint64_t index) const noexcept { return index < done.size() && done[index]; }
};

/// Why --resume cannot go on. usage(): exit 2, nothing was changed (the
/// file is not a results file, or cannot be read or written); otherwise an
/// I/O failure of the rewrite (exit 1; the file is intact, no temporary
/// file is left).
class resume_error : public std::runtime_error {
 public:
  resume_error(const std::string& what, bool usage) : std::runtime_error(what), usage_(usage) {}
  [[nodiscard]] bool usage() const noexcept { return usage_; }

 private:
  bool usage_;
};

/// Indices above this are not trusted as results (the scan's bitmap would
/// need more than 128 MiB): such lines are kept as they are.
inline constexpr std::uint64_t max_resume_index = std::uint64_t{1} << 30;

/// Reads `path` (a missing or empty file is an empty scan). Refuses a file
/// that is not a spindle results file, and one that is not a regular,
/// readable and writable file (resume_error, usage). When lines must be
/// removed (cancelled results, identical duplicates, a torn last line) or
/// a kept last line lacks its newline, rewrites the file through a
/// temporary file beside it (same mode, fsync, rename over the file a
/// symlink points to); every other line is kept, in order, byte for byte.
[[nodiscard]] resume_scan prepare_resume(const std::string& path);

}  // namespace spindle::cli
