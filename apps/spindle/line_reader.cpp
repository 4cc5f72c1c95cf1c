#include "line_reader.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace spindle::cli {

namespace {

constexpr std::string_view utf8_bom = "\xEF\xBB\xBF";

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

}  // namespace

line_reader::~line_reader() {
  if (fd_ > 2) ::close(fd_);
}

bool line_reader::read_batch(std::vector<input_line>& out, std::size_t max) {
  for (;;) {
    take_ready(out, max);
    if (out.size() >= max) return true;
    if (eof_) {
      if (!ended_) {
        ended_ = true;
        if (!bom_checked_) {  // fewer than 3 bytes in all
          bom_checked_ = true;
          feed_lines(std::exchange(head_, std::string()));
        }
        if (!partial_.empty() || long_) end_line();  // a last line without a newline
        take_ready(out, max);
      }
      return ready_head_ < ready_.size();
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
    feed(std::string_view(chunk, static_cast<std::size_t>(n)));
  }
}

void line_reader::feed(std::string_view data) {
  if (!bom_checked_) {
    // Held aside until 3 bytes say whether the input starts with a BOM (a
    // pipe may deliver them one at a time).
    const std::size_t take = std::min(data.size(), utf8_bom.size() - head_.size());
    head_.append(data.substr(0, take));
    data.remove_prefix(take);
    if (head_.size() < utf8_bom.size() && utf8_bom.starts_with(head_)) return;  // (data is empty)
    bom_checked_ = true;
    const std::string head = std::exchange(head_, std::string());
    if (head != utf8_bom) feed_lines(head);
  }
  feed_lines(data);
}

void line_reader::feed_lines(std::string_view data) {
  while (!data.empty()) {
    const std::size_t nl = data.find('\n');
    const std::string_view part = data.substr(0, nl);
    if (nl != std::string_view::npos && !long_ && partial_.empty()) {
      // The common case, a whole line in one read: not copied twice.
      std::string_view s = part;
      if (s.ends_with('\r')) s.remove_suffix(1);
      if (s.size() <= max_line) {
        ++line_;
        add_line(s);
      } else {
        count_long(part);
        end_line();
      }
    } else {
      if (!long_ && partial_.size() + part.size() > max_line + 1) {
        // Over the limit (even if the next byte is the CR of a CRLF): from
        // here on the line is counted, not kept.
        count_long(partial_);
        partial_.clear();
        partial_.shrink_to_fit();
      }
      if (long_) {
        count_long(part);
      } else {
        partial_.append(part);
      }
      if (nl == std::string_view::npos) return;
      end_line();
    }
    data.remove_prefix(nl + 1);
  }
}

void line_reader::count_long(std::string_view part) {
  if (!long_) {
    long_ = true;
    long_length_ = 0;
    long_prefix_.clear();
    long_cr_ = false;
  }
  if (part.empty()) return;
  long_length_ += part.size();
  long_cr_ = part.back() == '\r';
  if (long_prefix_.size() < kept_prefix) {
    if (long_prefix_.empty()) {
      while (!part.empty() && is_blank(part.front())) part.remove_prefix(1);
    }
    long_prefix_.append(part.substr(0, kept_prefix - long_prefix_.size()));
  }
}

void line_reader::end_line() {
  ++line_;
  if (!long_) {
    std::string_view s = partial_;
    if (s.ends_with('\r')) s.remove_suffix(1);
    if (s.size() > max_line) {
      count_long(partial_);
    } else {
      add_line(s);
      partial_.clear();
      return;
    }
    partial_.clear();
  }
  long_ = false;
  // Blank or a comment (judged by its first non-blank byte): skipped, as a short one would be.
  if (long_prefix_.empty() || long_prefix_.front() == '#') return;
  input_line in;
  in.text = std::exchange(long_prefix_, std::string());
  in.too_long = long_length_ - (long_cr_ ? 1 : 0);
  ready_.push_back(std::move(in));
}

void line_reader::add_line(std::string_view s) {
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  if (s.empty() || s.front() == '#') return;
  input_line in;
  in.text = std::string(s);
  ready_.push_back(std::move(in));
}

void line_reader::take_ready(std::vector<input_line>& out, std::size_t max) {
  while (out.size() < max && ready_head_ < ready_.size()) out.push_back(std::move(ready_[ready_head_++]));
  if (ready_head_ == ready_.size()) {
    ready_.clear();
    ready_head_ = 0;
  }
}

}  // namespace spindle::cli
