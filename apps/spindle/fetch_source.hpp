#pragma once
// spindle fetch's source of inputs (apps/spindle/fetch.cpp, and with
// --loops N fetch_loops.cpp): the URL arguments, then the --urls file.

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fetch.hpp"
#include "line_reader.hpp"
#include "output.hpp"
#include "parse.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/http/fetch.hpp"
#include "spindle/thread_pool.hpp"

namespace spindle::cli {

// The inputs of this run: the URL arguments, then the --urls file's lines,
// numbered from 0 across both; those of other shards and those --resume
// found done are skipped (they never reach the engine).
class cli_source final : public http::fetch_source {
 public:
  cli_source(const fetch_options& o, event_loop& loop, std::shared_ptr<line_reader> file, bool is_file,
             const resume_scan& done)
      : o_(o), file_(std::move(file)), is_file_(is_file), done_(done), pool_(pool_options(loop)) {}

  task<bool> next(std::vector<http::fetch_input>& out, std::size_t max) override {
    while (next_arg_ < o_.urls.size() && out.size() < max) take(o_.urls[next_arg_++], 0, out);
    if (next_arg_ < o_.urls.size()) co_return true;
    if (!file_ || file_done_) co_return false;
    if (!out.empty()) co_return true;
    // Named, not a temporary inside the co_await: g++ 12 destroys such
    // temporaries' captures twice (DEVELOPERS.md). The job owns the reader
    // (shared), so an abandoned read (a pipe's, cut off by a stop)
    // outlives this run safely.
    auto read_batch = [f = file_, max] {
      std::vector<input_line> lines;
      const bool more = f->read_batch(lines, max);
      return std::make_pair(more, std::move(lines));
    };
    auto reading = run_blocking(pool_, job_name{"read urls"}, std::move(read_batch));
    std::pair<bool, std::vector<input_line>> batch = co_await std::move(reading);
    for (input_line& line : batch.second) take(std::move(line.text), line.too_long, out);
    if (batch.first) co_return true;
    file_done_ = true;
    if (file_->error() != 0)
      error_ = file_->name() + ": line " + std::to_string(file_->line() + 1) + ": " +
               std::strerror(file_->error());
    co_return false;
  }
  // A regular file ends: after --deadline it is read to its end (every
  // line its cancelled result). A pipe may never end.
  [[nodiscard]] bool finite() const noexcept override { return !file_ || is_file_; }

  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  std::uint64_t skipped = 0, other_shards = 0;

 private:
  static thread_pool_options pool_options(event_loop& l) {
    thread_pool_options p;
    p.name = "fetch-input";
    p.threads = 1;
    p.queue_capacity = 2;
    p.abandon_grace =
        std::chrono::milliseconds(100);  // a read blocked on a silent pipe is left behind at exit
    p.attach_to = &l;
    return p;
  }

  void take(std::string text, std::uint64_t too_long, std::vector<http::fetch_input>& out) {
    const std::uint64_t index = next_index_++;
    if (!shard_of(o_).mine(index, text)) {
      ++other_shards;
      return;
    }
    if (done_.has(index)) {
      ++skipped;
      return;
    }
    http::fetch_input in;
    in.index = index;
    in.url = std::move(text);
    if (too_long != 0) in.invalid = "line too long: " + std::to_string(too_long) + " bytes";
    out.push_back(std::move(in));
  }

  const fetch_options& o_;
  std::shared_ptr<line_reader> file_;
  bool is_file_;
  const resume_scan& done_;
  thread_pool pool_;
  std::size_t next_arg_ = 0;
  std::uint64_t next_index_ = 0;
  bool file_done_ = false;
  std::string error_;
};

}  // namespace spindle::cli
