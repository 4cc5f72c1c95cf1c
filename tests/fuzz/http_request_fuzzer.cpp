// libFuzzer: arbitrary bytes as what a client sends to http::server —
// requests parsed one after another from one stream, as a kept-alive,
// pipelining connection does. Anything but requests or protocol_error is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "spindle/http/connection.hpp"
#include "spindle/http/parser.hpp"

// The first byte picks how the rest arrives: all at once (0), or in reads
// of that many bytes (a request line or a field split across reads).
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace spindle::http;
  if (size == 0) return 0;
  const std::size_t piece = data[0] == 0 ? size : data[0];
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  message_parser p(message_parser::kind::request,
                   {.max_header_bytes = 4 * 1024, .max_header_fields = 50, .max_body_bytes = 64 * 1024});
  try {
    for (int messages = 0; !input.empty() && messages < 64; ++messages) {
      while (!input.empty() && !p.complete()) {
        const std::string_view now = input.substr(0, piece);
        const std::size_t used = p.feed(now);
        input.remove_prefix(used);
        if (used < now.size() && !p.complete())
          std::abort();  // a read is consumed unless a message ends in it
      }
      if (!p.complete()) break;  // needs more bytes than there are
      request& r = p.request_message();
      if (r.method.empty()) std::abort();
      if (r.headers.size() > 50 || r.body.size() > 64 * 1024) std::abort();  // the limits hold
      response echo;
      echo.status = 200;
      echo.body = r.body;
      (void)serialize(echo);  // what the server would answer
      p.reset();
    }
  } catch (const protocol_error&) {
  }
  return 0;
}
