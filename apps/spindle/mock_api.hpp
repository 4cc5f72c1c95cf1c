#pragma once
// The embedded mock API of `spindle demo` (and of the fetch benchmark):
// spindle's own http::server on 127.0.0.1, on a background loop of its own
// so whatever the demo does to its own loop never slows the server.
//
//   GET /items/{id}[?delay_ms=N][&fail=CODE][&hang=1][&flaky=1][&binary=1]
//     200 {"id":ID,"name":"item ID"} after N ms (at most 60 s);
//     fail=CODE: that status instead (429 and 503 with Retry-After: 0);
//     hang=1: answers only after 60 s (a client timeout is the way out);
//     flaky=1: 503 the first time this id is asked for, 200 afterwards;
//     binary=1: the 256 byte values 0..255 (application/octet-stream).
//   GET /         200 "hello" (the benchmarks' plain route)
//   anything else 404

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace spindle::cli {

class mock_api {
 public:
  /// Starts serving on 127.0.0.1:`port` (0: an ephemeral port).
  explicit mock_api(std::uint16_t port = 0);
  /// Stops the server (graceful, bounded) and its loop.
  ~mock_api();
  mock_api(const mock_api&) = delete;
  mock_api& operator=(const mock_api&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept;
  /// "http://127.0.0.1:PORT"
  [[nodiscard]] std::string base_url() const;
  /// Requests answered so far.
  [[nodiscard]] std::uint64_t requests() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace spindle::cli
