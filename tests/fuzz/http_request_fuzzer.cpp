// libFuzzer: arbitrary bytes as what a client sends to http::server —
// requests parsed one after another from one stream, as a kept-alive,
// pipelining connection does. Anything but requests or protocol_error is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "spindle/http/connection.hpp"
#include "spindle/http/parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace spindle::http;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  message_parser p(message_parser::kind::request,
                   {.max_header_bytes = 4 * 1024, .max_body_bytes = 64 * 1024});
  try {
    for (int messages = 0; !input.empty() && messages < 64; ++messages) {
      const std::size_t used = p.feed(input);
      input.remove_prefix(used);
      if (!p.complete()) break;  // needs more bytes than there are
      request& r = p.request_message();
      if (r.method.empty()) std::abort();
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
