#pragma once
// --output-dir: each ok body streamed to a file of its own (docs/cli.md,
// "Saving bodies"). Bodies are written in pieces of up to 256 KiB on a
// small thread pool (the loop never waits for the disk), to a temporary
// file beside the target; an ok attempt renames it to its name, any other
// ending removes it. A name already taken is never overwritten: the body
// goes to NAME.1, NAME.2, ... instead (wget's rule), and the result's
// "path" says where it went. One store may serve fetchers on several loops
// (--loops N): the names of temporaries come from an atomic counter, a
// taken name is found by link(2) failing with EEXIST, and each write job
// answers the loop that awaited it.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "spindle/event_loop.hpp"
#include "spindle/http/fetch.hpp"
#include "spindle/thread_pool.hpp"

namespace spindle::cli {

/// A --name template: {index}, {basename}, {host} and {shard} in literal
/// text; '/' makes subdirectories. Throws std::invalid_argument for an
/// unknown placeholder, an absolute path, a ".." segment or an empty name.
class name_template {
 public:
  explicit name_template(std::string text);
  /// The file name (relative to the directory) of input `index` with URL `url`.
  [[nodiscard]] std::string expand(std::uint64_t index, std::string_view url, std::uint64_t shard) const;

 private:
  std::string text_;
};

/// The last segment of a URL's path, percent-decoded, made safe as a file
/// name ('/', NUL and control bytes become '_'); "index.html" when there is
/// none (wget's rule). At most 200 bytes.
[[nodiscard]] std::string url_basename(std::string_view url);

class body_files final : public http::fetch_body_store {
 public:
  /// Creates `dir` (and its parents) if needed; throws std::runtime_error
  /// when it cannot.
  body_files(event_loop& loop, std::string dir, name_template names, std::uint64_t shard);
  std::unique_ptr<http::fetch_body_target> open(const http::fetch_input& input, unsigned attempt) override;

  struct shared;

 private:
  std::shared_ptr<shared> s_;
};

}  // namespace spindle::cli
