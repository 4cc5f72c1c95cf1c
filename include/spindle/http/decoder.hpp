#pragma once
/// \file
/// content_decoder: a response body's Content-Encoding (gzip, deflate, br,
/// zstd, and chains of them) decoded incrementally, in output pieces no
/// larger than the caller asks for; and decode_content() for a whole
/// buffered body.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "spindle/http/errors.hpp"
#include "spindle/http/message.hpp"

namespace spindle::http {

namespace detail {
class decoder_stage;  // one coding's decoder (src/http/decoder.cpp)
}  // namespace detail

/// Decodes a response body's Content-Encoding incrementally.
///
/// A pull design, so that a decompression bomb costs only what the caller
/// takes: input() hands over the next piece of the encoded body, output()
/// is called until it returns 0, each call writing at most the bytes asked
/// for, and finish() checks that the encoded stream ended. Memory is bounded
/// whatever the input: zlib's window is 32 KiB, brotli runs without large
/// windows (16 MiB at most), zstd refuses frames whose window passes 8 MiB
/// (RFC 9659's limit for HTTP), and a chain's stages pass data to each
/// other through 16 KiB buffers.
///
/// Bytes after the end of a gzip member (other than a next member), of a
/// deflate stream or of a br stream are ignored (gunzip ignores trailing
/// garbage too); zstd decodes any number of frames, and anything else after
/// a frame is corrupt.
///
/// One cost the output size does not bound: in a chain, an inner coding
/// that consumes data without producing any (zstd skippable frames, brotli
/// metadata blocks, empty deflate blocks) makes one output() call decode
/// whatever the outer coding yields until output appears. Data ignored
/// after the end of an inner stream stops the outer stages instead of
/// being decoded.
///
/// After a protocol_error the decoder must not be used again.
///
/// **Thread safety:** one thread. Distinct objects: safe. Shared objects:
/// unsafe. Not copyable.
///
/// **Cancellation:** nothing here suspends; a caller that yields between
/// output() calls can be cancelled there and simply destroys the decoder.
class content_decoder {
 public:
  /// A decoder for a Content-Encoding field value (a comma-separated list of
  /// codings, applied in order by the sender, so decoded in reverse order).
  /// Supported codings (case-insensitive, surrounding whitespace ignored):
  /// gzip, x-gzip, deflate, br, zstd, and identity (skipped).
  /// Returns nullptr when there is nothing to decode (empty or identity
  /// only) or when any listed coding is unknown (the body is then left as
  /// received, as curl does). Throws protocol_error for more than 5
  /// codings (curl's limit; identity and unknown ones count, empty list
  /// elements do not).
  static std::unique_ptr<content_decoder> make(std::string_view content_encoding);
  ~content_decoder();
  content_decoder(const content_decoder&) = delete;
  content_decoder& operator=(const content_decoder&) = delete;

  /// The next piece of the encoded body. Only call when the previous input
  /// was consumed (output() returned 0; else usage_error). The bytes must
  /// stay valid until then.
  void input(std::span<const char> encoded);
  /// Writes up to out.size() decoded bytes into `out` and returns how many.
  /// 0 means all input given so far is consumed and more is needed (or the
  /// encoded stream has ended). Throws protocol_error for corrupt data
  /// (message like "bad gzip body: <zlib's reason>"), usage_error for an
  /// empty `out`.
  std::size_t output(std::span<char> out);
  /// The end of the body: throws protocol_error ("bad gzip body: truncated",
  /// etc.) if the encoded stream did not end. Empty total input (a 0-byte
  /// body) is not an error.
  void finish();
  /// Names of the codings, e.g. "gzip" or "gzip, br" (for messages): as
  /// listed, lower case, x-gzip as gzip, without identity.
  [[nodiscard]] const std::string& codings() const noexcept { return codings_; }

 private:
  static constexpr std::size_t max_codings = 5;  // curl's limit
  static constexpr std::size_t stage_buffer_bytes = 16 * 1024;

  content_decoder() = default;
  /// Up to out.size() bytes from stage i, refilling its input from stage
  /// i - 1 through buffers_ as it runs dry.
  std::size_t pull(std::size_t i, std::span<char> out);

  std::vector<std::unique_ptr<detail::decoder_stage>> stages_;  // in decoding order
  std::unique_ptr<char[]> buffers_;                             // stage_buffer_bytes per inner stage
  std::string codings_;
  std::uint64_t total_in_ = 0;
};

/// Decodes a whole buffered body (for callers that have one), bounded: throws
/// protocol_error when the decoded size would pass `max_bytes`. Removes the
/// Content-Encoding header when it decoded; leaves unknown codings alone.
/// Several Content-Encoding fields are read as one list.
void decode_content(response& r, std::uint64_t max_bytes);

}  // namespace spindle::http
