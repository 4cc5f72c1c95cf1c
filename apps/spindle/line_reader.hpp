#pragma once
// The URL list of `spindle fetch`: lines of a file or stdin, read with
// blocking calls (on the fetch's one-thread input pool). A batch ends at
// `max` lines, at the end of the input, or as soon as no more bytes are
// ready: a slow producer (`tail -f urls | spindle fetch --urls -`) gets each
// line fetched as it arrives, not after 1,024 more.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace spindle::cli {

class line_reader {
 public:
  /// Owns `fd` (closes it unless it is 0, 1 or 2); `name` is for messages.
  line_reader(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  ~line_reader();
  line_reader(const line_reader&) = delete;
  line_reader& operator=(const line_reader&) = delete;

  /// Up to `max` URLs, trimmed, blank lines and # comments skipped. False
  /// at the end of the input or on a read error (error() tells).
  bool read_batch(std::vector<std::string>& out, std::size_t max);
  [[nodiscard]] int error() const noexcept { return error_; }
  /// Lines read so far (blank and comment lines included).
  [[nodiscard]] std::uint64_t line() const noexcept { return line_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  static constexpr std::size_t max_line = 1 << 20;
  void take_lines(std::vector<std::string>& out, std::size_t max);
  void add_line(std::vector<std::string>& out, std::string_view s);

  int fd_;
  std::string name_;
  std::string buf_;
  std::uint64_t line_ = 0;
  bool eof_ = false;
  int error_ = 0;
};

}  // namespace spindle::cli
