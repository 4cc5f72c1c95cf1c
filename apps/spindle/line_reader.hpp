#pragma once
// The URL list of `spindle fetch`: lines of a file or stdin, read with
// blocking calls (on the fetch's one-thread input pool). A batch ends at
// `max` lines, at the end of the input, or as soon as no more bytes are
// ready: a slow producer (`tail -f urls | spindle fetch --urls -`) gets each
// line fetched as it arrives, not after 1,024 more.
//
// One line is one input, whatever its length: a line longer than max_line
// is one input of its own (too_long: its length), never cut into pieces,
// and it is not kept in memory beyond its first bytes (a 10 MB line is
// counted as it streams by). A UTF-8 byte order mark at the very start of
// the input is skipped.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace spindle::cli {

/// One input line, trimmed of blanks (and of a CR before its LF).
struct input_line {
  /// The line; for a line over the limit only its first `kept_prefix` bytes.
  std::string text;
  /// 0, or the length in bytes of a line over line_reader::max_line (the
  /// line ending not counted): not a URL to request.
  std::uint64_t too_long = 0;
};

class line_reader {
 public:
  /// The longest line taken as a URL (64 KiB); longer ones are `too_long`.
  static constexpr std::size_t max_line = 64 * 1024;
  /// What a line over the limit keeps of its text.
  static constexpr std::size_t kept_prefix = 256;

  /// Owns `fd` (closes it unless it is 0, 1 or 2); `name` is for messages.
  line_reader(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  ~line_reader();
  line_reader(const line_reader&) = delete;
  line_reader& operator=(const line_reader&) = delete;

  /// Up to `max` inputs; blank lines and # comments skipped (also when they
  /// are over the limit). False at the end of the input or on a read error
  /// (error() tells).
  bool read_batch(std::vector<input_line>& out, std::size_t max);
  [[nodiscard]] int error() const noexcept { return error_; }
  /// Lines read so far (blank and comment lines included).
  [[nodiscard]] std::uint64_t line() const noexcept { return line_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  void feed(std::string_view data);
  void feed_lines(std::string_view data);
  void end_line();
  void count_long(std::string_view part);
  void add_line(std::string_view s);
  void take_ready(std::vector<input_line>& out, std::size_t max);

  int fd_;
  std::string name_;
  std::uint64_t line_ = 0;
  bool eof_ = false;
  bool ended_ = false;  // the last line (without a newline) is in ready_
  int error_ = 0;
  // The first bytes of the input, until it is known whether they are a BOM.
  bool bom_checked_ = false;
  std::string head_;
  // The current line while it is within the limit (at most max_line + 1
  // bytes: the +1 may be the CR of a CRLF).
  std::string partial_;
  // The current line once it is over the limit: counted, not kept.
  bool long_ = false;
  std::uint64_t long_length_ = 0;
  std::string long_prefix_;  // its first kept_prefix bytes from the first non-blank one
  bool long_cr_ = false;     // its last byte so far is '\r'
  // Inputs of complete lines, in order, not handed out yet (at most those of one read).
  std::vector<input_line> ready_;
  std::size_t ready_head_ = 0;
};

}  // namespace spindle::cli
