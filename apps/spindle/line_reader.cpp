#include "line_reader.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace spindle::cli {

line_reader::~line_reader() {
  if (fd_ > 2) ::close(fd_);
}

bool line_reader::read_batch(std::vector<std::string>& out, std::size_t max) {
  for (;;) {
    take_lines(out, max);
    if (out.size() >= max) return true;
    if (eof_) {
      if (!buf_.empty()) {  // a last line without a newline
        std::string last = std::exchange(buf_, std::string());
        add_line(out, last);
      }
      return false;
    }
    if (!out.empty()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 0) <= 0) return true;  // nothing more right now: hand these over
    }
    char chunk[64 * 1024];
    const ssize_t n = ::read(fd_, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = errno;
      return false;
    }
    if (n == 0) {
      eof_ = true;
      continue;
    }
    buf_.append(chunk, static_cast<std::size_t>(n));
    if (buf_.size() > max_line && buf_.find('\n') == std::string::npos) {
      // A "line" of a megabyte: an input of its own (an invalid URL), not unbounded memory.
      std::string huge = std::exchange(buf_, std::string());
      add_line(out, huge);
    }
  }
}

void line_reader::take_lines(std::vector<std::string>& out, std::size_t max) {
  std::size_t pos = 0;
  while (out.size() < max) {
    const std::size_t nl = buf_.find('\n', pos);
    if (nl == std::string::npos) break;
    add_line(out, std::string_view(buf_).substr(pos, nl - pos));
    pos = nl + 1;
  }
  buf_.erase(0, pos);
}

void line_reader::add_line(std::vector<std::string>& out, std::string_view s) {
  ++line_;
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  if (s.empty() || s.front() == '#') return;
  out.emplace_back(s);
}

}  // namespace spindle::cli
