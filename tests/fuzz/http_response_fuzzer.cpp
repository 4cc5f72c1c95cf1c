// libFuzzer: arbitrary bytes as a server's response, through what the HTTP
// client does with one: llhttp parsing in chunks (the first byte picks the
// chunk size), end of stream, and Content-Encoding decoding. Anything but a
// clean result or protocol_error (kind "protocol") is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "spindle/http/connection.hpp"
#include "spindle/http/parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace spindle::http;
  if (size == 0) return 0;
  const std::size_t chunk = 1 + data[0] % 64;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  message_parser p(message_parser::kind::response, {.max_header_bytes = 8 * 1024, .max_body_bytes = 1 << 20});
  p.set_no_body(size > 1 && (data[1] & 1) != 0 && (data[0] & 0x80) != 0);  // sometimes a HEAD response
  try {
    while (!input.empty() && !p.complete()) {
      const std::size_t n = std::min(chunk, input.size());
      const std::size_t used = p.feed(input.substr(0, n));
      input.remove_prefix(used);
      if (used < n) break;  // a message ended: the rest is junk for the next one
    }
    if (!p.complete()) p.finish();
    response& r = p.response_message();
    decode_content(r, 4 << 20);
    if (r.status < 100 || r.status > 999) std::abort();  // llhttp guarantees three digits
  } catch (const protocol_error&) {
  }
  return 0;
}
