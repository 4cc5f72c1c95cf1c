#include "spindle/http/decoder.hpp"

#include <brotli/encode.h>
#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

// content_decoder: every coding round-trips whatever the input and output
// piece sizes; a bomb comes out in pieces no larger than asked; corrupt and
// truncated bodies are protocol_errors; chains decode in reverse order; zstd
// windows past 8 MiB are refused; decode_content() stays within its limit.

namespace spindle::http {
namespace {

enum class codec { gzip, zlib, raw_deflate, br, zstd };

const char* coding_name(codec c) {
  switch (c) {
    case codec::gzip: return "gzip";
    case codec::zlib:
    case codec::raw_deflate: return "deflate";
    case codec::br: return "br";
    case codec::zstd: return "zstd";
  }
  return "";
}

std::string codec_label(codec c) {
  switch (c) {
    case codec::zlib: return "ZlibDeflate";
    case codec::raw_deflate: return "RawDeflate";
    default: break;
  }
  std::string s = coding_name(c);
  s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

// A streaming compressor, so that a bomb's decoded size is never in memory.
class encoder {
 public:
  explicit encoder(codec c, int zstd_window_log = 0) : c_(c) {
    switch (c) {
      case codec::gzip:
      case codec::zlib:
      case codec::raw_deflate: {
        const int bits = c == codec::gzip ? 15 + 16 : c == codec::zlib ? 15 : -15;
        if (deflateInit2(&z_, 6, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw std::bad_alloc();
        break;
      }
      case codec::br:
        br_ = BrotliEncoderCreateInstance(nullptr, nullptr, nullptr);
        BrotliEncoderSetParameter(br_, BROTLI_PARAM_QUALITY, 5);
        break;
      case codec::zstd:
        zstd_ = ZSTD_createCCtx();
        if (zstd_window_log != 0) ZSTD_CCtx_setParameter(zstd_, ZSTD_c_windowLog, zstd_window_log);
        break;
    }
  }
  ~encoder() {
    if (br_ != nullptr) BrotliEncoderDestroyInstance(br_);
    if (zstd_ != nullptr) ZSTD_freeCCtx(zstd_);
    if (br_ == nullptr && zstd_ == nullptr) deflateEnd(&z_);
  }
  encoder(const encoder&) = delete;
  encoder& operator=(const encoder&) = delete;

  void feed(std::string_view data) { run(data, false); }
  std::string finish() {
    run({}, true);
    return std::move(out_);
  }

 private:
  void run(std::string_view data, bool last) {
    char buf[64 * 1024];
    switch (c_) {
      case codec::br: {
        std::size_t avail_in = data.size();
        const auto* next_in = reinterpret_cast<const std::uint8_t*>(data.data());
        const auto op = last ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_PROCESS;
        do {
          std::size_t avail_out = sizeof buf;
          auto* next_out = reinterpret_cast<std::uint8_t*>(buf);
          ASSERT_TRUE(
              BrotliEncoderCompressStream(br_, op, &avail_in, &next_in, &avail_out, &next_out, nullptr));
          out_.append(buf, sizeof buf - avail_out);
        } while (avail_in > 0 || BrotliEncoderHasMoreOutput(br_) || (last && !BrotliEncoderIsFinished(br_)));
        break;
      }
      case codec::zstd: {
        ZSTD_inBuffer in{data.data(), data.size(), 0};
        for (;;) {
          ZSTD_outBuffer o{buf, sizeof buf, 0};
          const std::size_t left = ZSTD_compressStream2(zstd_, &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
          ASSERT_FALSE(ZSTD_isError(left)) << ZSTD_getErrorName(left);
          out_.append(buf, o.pos);
          if (last ? left == 0 : in.pos == in.size) break;
        }
        break;
      }
      default: {
        z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
        z_.avail_in = static_cast<uInt>(data.size());
        int r = Z_OK;
        do {
          z_.next_out = reinterpret_cast<Bytef*>(buf);
          z_.avail_out = sizeof buf;
          r = deflate(&z_, last ? Z_FINISH : Z_NO_FLUSH);
          out_.append(buf, sizeof buf - z_.avail_out);
        } while (last ? r != Z_STREAM_END : z_.avail_in > 0 || z_.avail_out == 0);
        break;
      }
    }
  }

  codec c_;
  z_stream z_{};
  BrotliEncoderState* br_ = nullptr;
  ZSTD_CCtx* zstd_ = nullptr;
  std::string out_;
};

std::string encode(codec c, std::string_view data) {
  encoder e(c);
  e.feed(data);
  return e.finish();
}

// Text-like data: compressible, but not trivially.
std::string sample(std::size_t n) {
  static const char* const words[] = {"spindle ", "coroutine ", "loop ", "await ", "the ", "a ",
                                      "body\n",   "gzip ",      "zstd ", "br ",    "€ ",   "\x01\xff"};
  std::string s;
  std::uint32_t x = 12345;
  while (s.size() < n) {
    x = x * 1103515245 + 12345;
    s += words[(x >> 16) % std::size(words)];
    if ((x & 0x70) == 0) s += static_cast<char>(x >> 24);
  }
  s.resize(n);
  return s;
}

// Feeds `encoded` in pieces of `in_piece` bytes, takes output in pieces of
// up to `out_size` bytes, and finishes.
std::string decode(content_decoder& d, std::string_view encoded, std::size_t in_piece, std::size_t out_size) {
  std::string result;
  std::vector<char> buf(out_size);
  for (std::size_t pos = 0; pos < encoded.size(); pos += in_piece) {
    d.input(encoded.substr(pos, in_piece));
    while (const std::size_t n = d.output(buf)) {
      EXPECT_LE(n, out_size);
      result.append(buf.data(), n);
    }
  }
  d.finish();
  return result;
}

std::string decode(std::string_view coding, std::string_view encoded, std::size_t in_piece = 1 << 20,
                   std::size_t out_size = 64 * 1024) {
  const auto d = content_decoder::make(coding);
  if (!d) throw std::logic_error("no decoder for " + std::string(coding));
  return decode(*d, encoded, in_piece, out_size);
}

// The protocol_error's message, or "" when none was thrown.
template <class Fn>
std::string protocol_error_of(Fn&& fn) {
  try {
    fn();
  } catch (const protocol_error& e) {
    return e.what();
  }
  return "";
}

// ---- making decoders -----------------------------------------------------------

TEST(ContentDecoder, MakeReadsTheCodingList) {
  EXPECT_EQ(content_decoder::make("gzip")->codings(), "gzip");
  EXPECT_EQ(content_decoder::make("x-gzip")->codings(), "gzip");
  EXPECT_EQ(content_decoder::make(" GZip ,\tBR ")->codings(), "gzip, br");
  EXPECT_EQ(content_decoder::make("deflate, identity, zstd")->codings(), "deflate, zstd");
  EXPECT_EQ(content_decoder::make("gzip,,br,")->codings(), "gzip, br");
}

TEST(ContentDecoder, NothingToDecodeIsNull) {
  EXPECT_EQ(content_decoder::make(""), nullptr);
  EXPECT_EQ(content_decoder::make(" , "), nullptr);
  EXPECT_EQ(content_decoder::make("identity"), nullptr);
  EXPECT_EQ(content_decoder::make("Identity, identity"), nullptr);
}

TEST(ContentDecoder, UnknownCodingIsNull) {
  EXPECT_EQ(content_decoder::make("compress"), nullptr);
  EXPECT_EQ(content_decoder::make("gzip, compress"), nullptr);
  EXPECT_EQ(content_decoder::make("gzip2"), nullptr);
  EXPECT_EQ(content_decoder::make("br;q=1"), nullptr);
}

TEST(ContentDecoder, MoreThanFiveCodingsThrow) {
  EXPECT_NE(content_decoder::make("gzip, gzip, gzip, gzip, gzip"), nullptr);
  EXPECT_THROW(content_decoder::make("gzip, gzip, gzip, gzip, gzip, gzip"), protocol_error);
  EXPECT_THROW(content_decoder::make("identity, identity, identity, identity, identity, identity"),
               protocol_error);
  EXPECT_THROW(content_decoder::make("gzip, br, zstd, deflate, foo, gzip"), protocol_error);
}

TEST(ContentDecoder, InputBeforeTheLastWasConsumedIsAUsageError) {
  const std::string gz = encode(codec::gzip, sample(1000));
  const auto d = content_decoder::make("gzip");
  d->input(gz);
  EXPECT_THROW(d->input(gz), usage_error);
  char c;
  EXPECT_THROW(d->output(std::span<char>(&c, 0)), usage_error);
}

// ---- every coding --------------------------------------------------------------

class EachCoding : public testing::TestWithParam<codec> {};

INSTANTIATE_TEST_SUITE_P(ContentDecoder, EachCoding,
                         testing::Values(codec::gzip, codec::zlib, codec::raw_deflate, codec::br,
                                         codec::zstd),
                         [](const testing::TestParamInfo<codec>& i) { return codec_label(i.param); });

TEST_P(EachCoding, DecodesInAnyPieceSizes) {
  const std::string data = sample(200 * 1024);
  const std::string encoded = encode(GetParam(), data);
  ASSERT_LT(encoded.size(), data.size());
  const std::size_t whole = encoded.size();
  for (const auto& [in, out] : std::vector<std::pair<std::size_t, std::size_t>>{
           {1, 1}, {1, 64 * 1024}, {whole, 1}, {whole, 64 * 1024}, {7, 13}, {4096, 1000}}) {
    EXPECT_EQ(decode(coding_name(GetParam()), encoded, in, out), data) << "in " << in << ", out " << out;
  }
}

TEST_P(EachCoding, EmptyBodyIsNotAnError) {
  const auto d = content_decoder::make(coding_name(GetParam()));
  EXPECT_NO_THROW(d->finish());
  const auto e = content_decoder::make(coding_name(GetParam()));
  e->input({});
  char buf[16];
  EXPECT_EQ(e->output(buf), 0U);
  EXPECT_NO_THROW(e->finish());
}

TEST_P(EachCoding, EmptyContentRoundTrips) {
  EXPECT_EQ(decode(coding_name(GetParam()), encode(GetParam(), ""), 1, 1), "");
}

TEST_P(EachCoding, TruncatedThrowsAtFinish) {
  const std::string data = sample(10 * 1024);
  const std::string encoded = encode(GetParam(), data);
  for (const std::size_t keep : {encoded.size() - 1, encoded.size() / 2, std::size_t{1}}) {
    const auto d = content_decoder::make(coding_name(GetParam()));
    d->input(std::string_view(encoded).substr(0, keep));
    std::string out(data.size() + 1, '\0');
    std::size_t got = 0;
    while (const std::size_t n = d->output(std::span<char>(out).subspan(got))) got += n;
    EXPECT_EQ(out.substr(0, got), data.substr(0, got));
    EXPECT_EQ(protocol_error_of([&] { d->finish(); }),
              "bad " + std::string(coding_name(GetParam())) + " body: truncated")
        << "kept " << keep << " of " << encoded.size();
  }
}

// Zeros: a small input that decodes to 64 MiB (1 GiB would be ~1 MiB of gzip).
constexpr std::size_t bomb_bytes = 64 << 20;

std::string bomb(codec c) {
  encoder e(c);
  const std::string zeros(1 << 20, '\0');
  for (std::size_t i = 0; i < bomb_bytes / zeros.size(); ++i) e.feed(zeros);
  return e.finish();
}

TEST_P(EachCoding, BombComesOutInPiecesNoLargerThanAsked) {
  const std::string encoded = bomb(GetParam());
  ASSERT_LT(encoded.size(), bomb_bytes / 500);
  const auto d = content_decoder::make(coding_name(GetParam()));
  d->input(encoded);
  std::vector<char> buf(64 * 1024);
  std::size_t total = 0, calls = 0;
  bool zeros = true;
  while (const std::size_t n = d->output(buf)) {
    ASSERT_LE(n, buf.size());
    zeros = zeros && std::all_of(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n),
                                 [](char c) { return c == 0; });
    total += n;
    ++calls;
  }
  d->finish();
  EXPECT_EQ(total, bomb_bytes);
  EXPECT_TRUE(zeros);
  EXPECT_GE(calls, bomb_bytes / buf.size());
}

TEST_P(EachCoding, BombStopsWhenTheCallerStops) {
  const std::string encoded = bomb(GetParam());
  const auto d = content_decoder::make(coding_name(GetParam()));
  d->input(encoded);
  char buf[4096];
  std::size_t total = 0;
  for (int i = 0; i < 256; ++i) {
    const std::size_t n = d->output(std::span<char>(buf, 1 + i % sizeof buf));
    ASSERT_GT(n, 0U);
    ASSERT_LE(n, static_cast<std::size_t>(1 + i % sizeof buf));
    total += n;
  }
  EXPECT_LE(total, std::size_t{256} * 257 / 2);  // what was asked, not more
  // Destroying it mid-stream frees everything (ASan's leak check).
}

// ---- corrupt data ----------------------------------------------------------------

using namespace std::string_literals;

TEST(ContentDecoder, CorruptGzipThrows) {
  const std::string header = "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"s;
  EXPECT_EQ(protocol_error_of([&] { decode("gzip", header + "\xff\xff\xff\xff"s); }),
            "bad gzip body: invalid block type");
  EXPECT_EQ(protocol_error_of([&] { decode("gzip", "hello, world"); }),
            "bad gzip body: incorrect header check");
  std::string gz = encode(codec::gzip, sample(1000));
  gz[gz.size() - 6] ^= 1;  // the CRC-32
  EXPECT_EQ(protocol_error_of([&] { decode("gzip", gz, 1, 1); }), "bad gzip body: incorrect data check");
}

TEST(ContentDecoder, CorruptDeflateThrows) {
  EXPECT_EQ(protocol_error_of([&] { decode("deflate", "\x78\x9c\xff\xff"s); }),
            "bad deflate body: invalid block type");
  EXPECT_EQ(protocol_error_of([&] { decode("deflate", "\xff\xff\xff"s, 1, 1); }),
            "bad deflate body: invalid block type");
  std::string z = encode(codec::zlib, sample(1000));
  z.back() ^= 1;  // the Adler-32
  EXPECT_EQ(protocol_error_of([&] { decode("deflate", z); }), "bad deflate body: incorrect data check");
}

TEST(ContentDecoder, CorruptBrotliThrows) {
  const std::string msg = protocol_error_of([&] { decode("br", "\xff\xff\xff\xff\xff\xff\xff\xff"s); });
  EXPECT_TRUE(msg.starts_with("bad br body: ")) << msg;
  EXPECT_NE(msg, "bad br body: truncated");
  std::string br = encode(codec::br, sample(1000));
  br += "trailing";  // ignored after the end
  EXPECT_EQ(decode("br", br, 1, 1), sample(1000));
}

TEST(ContentDecoder, CorruptZstdThrows) {
  EXPECT_EQ(protocol_error_of([&] { decode("zstd", "hello, world"); }),
            "bad zstd body: Unknown frame descriptor");
  // The frame header descriptor's reserved bit set.
  const std::string msg = protocol_error_of([&] { decode("zstd", "\x28\xb5\x2f\xfd\x08\x00\x00\x00"s); });
  EXPECT_TRUE(msg.starts_with("bad zstd body: ")) << msg;
  EXPECT_NE(msg, "bad zstd body: truncated");
  // Frames may follow each other; anything else may not.
  const std::string a = sample(1000), b = sample(3000);
  EXPECT_EQ(decode("zstd", encode(codec::zstd, a) + encode(codec::zstd, b), 1, 7), a + b);
  EXPECT_EQ(protocol_error_of([&] { decode("zstd", encode(codec::zstd, a) + "junk"); }),
            "bad zstd body: Unknown frame descriptor");
}

// ---- gzip and deflate specifics ------------------------------------------------

TEST(ContentDecoder, ConcatenatedGzipMembers) {
  const std::string a = sample(5000), b = sample(7000).substr(100);
  const std::string both = encode(codec::gzip, a) + encode(codec::gzip, b) + encode(codec::gzip, "");
  EXPECT_EQ(decode("gzip", both), a + b);
  EXPECT_EQ(decode("gzip", both, 1, 1), a + b);
  EXPECT_EQ(decode("gzip", both, 3, 100), a + b);
  // A second member cut short.
  const std::string cut = encode(codec::gzip, a) + encode(codec::gzip, b).substr(0, 20);
  EXPECT_EQ(protocol_error_of([&] { decode("gzip", cut, 1, 1); }), "bad gzip body: truncated");
}

TEST(ContentDecoder, BytesAfterTheEndAreIgnored) {
  const std::string a = sample(5000);
  EXPECT_EQ(decode("gzip", encode(codec::gzip, a) + std::string(8, '\0'), 1, 64), a);
  EXPECT_EQ(decode("gzip", encode(codec::gzip, a) + "\x1f"), a);
  EXPECT_EQ(decode("gzip", encode(codec::gzip, a) + "\x1f\x8c more"), a);
  EXPECT_EQ(decode("deflate", encode(codec::zlib, a) + "junk", 1, 1), a);
  EXPECT_EQ(decode("deflate", encode(codec::raw_deflate, a) + "junk"), a);
  // More input after the end is taken (and ignored) as well.
  const auto d = content_decoder::make("gzip");
  const std::string gz = encode(codec::gzip, a);
  EXPECT_EQ(decode(*d, gz + "!", gz.size() + 1, 1 << 16), a);
  d->input("more junk");
  char buf[64];
  EXPECT_EQ(d->output(buf), 0U);
  EXPECT_NO_THROW(d->finish());
}

TEST(ContentDecoder, DeflateTellsZlibFromRaw) {
  const std::string a = sample(20000);
  const std::string zlib = encode(codec::zlib, a), raw = encode(codec::raw_deflate, a);
  ASSERT_EQ(static_cast<unsigned char>(zlib[0]), 0x78);
  for (const std::size_t in : {std::size_t{1}, std::size_t{2}, std::size_t{3}, zlib.size()}) {
    EXPECT_EQ(decode("deflate", zlib, in), a) << in;
    EXPECT_EQ(decode("deflate", raw, in), a) << in;
  }
  // A raw stream that is all over within its first two bytes (no content).
  EXPECT_EQ(decode("deflate", "\x03\x00"s, 1), "");
  EXPECT_EQ(decode("deflate", "\x03\x00"s), "");
  // One byte and the end: truncated.
  EXPECT_EQ(protocol_error_of([&] { decode("deflate", "\x78"); }), "bad deflate body: truncated");
}

// ---- chains --------------------------------------------------------------------

TEST(ContentDecoder, ChainDecodesTheLastAppliedFirst) {
  const std::string data = sample(100 * 1024);
  const std::string gzip_then_br = encode(codec::br, encode(codec::gzip, data));
  EXPECT_EQ(content_decoder::make("gzip, br")->codings(), "gzip, br");
  EXPECT_EQ(decode("gzip, br", gzip_then_br), data);
  EXPECT_EQ(decode("gzip, br", gzip_then_br, 1, 1), data);
  EXPECT_EQ(decode("gzip, br", gzip_then_br, 5000, 3), data);
  EXPECT_EQ(decode("gzip, br", gzip_then_br, 3, 100000), data);
  const std::string deflate_then_zstd = encode(codec::zstd, encode(codec::raw_deflate, data));
  EXPECT_EQ(decode("deflate, zstd", deflate_then_zstd, 1, 1), data);
  EXPECT_EQ(decode("deflate,identity,zstd", deflate_then_zstd), data);
  // The other order reads br bytes as gzip.
  EXPECT_EQ(protocol_error_of([&] { decode("br, gzip", gzip_then_br); }),
            "bad gzip body: incorrect header check");
}

TEST(ContentDecoder, ChainOfFiveRoundTrips) {
  const std::string data = sample(50 * 1024);
  const std::string e = encode(
      codec::gzip, encode(codec::zstd, encode(codec::br, encode(codec::zlib, encode(codec::gzip, data)))));
  EXPECT_EQ(decode("gzip, deflate, br, zstd, gzip", e, 17, 19), data);
}

TEST(ContentDecoder, ChainTruncatedThrowsAtFinish) {
  const std::string inner = encode(codec::gzip, sample(10000));
  // The outer coding complete, the inner one cut short.
  const std::string e = encode(codec::zstd, std::string_view(inner).substr(0, inner.size() - 3));
  EXPECT_EQ(protocol_error_of([&] { decode("gzip, zstd", e, 1, 1); }), "bad gzip body: truncated");
  // The outer one cut short.
  const std::string f = encode(codec::zstd, inner);
  EXPECT_EQ(protocol_error_of([&] { decode("gzip, zstd", std::string_view(f).substr(0, f.size() - 1)); }),
            "bad zstd body: truncated");
}

TEST(ContentDecoder, ChainedBombComesOutInPiecesNoLargerThanAsked) {
  const std::string inner = bomb(codec::gzip);
  const std::string encoded = encode(codec::br, inner);
  const auto d = content_decoder::make("gzip, br");
  d->input(encoded);
  char buf[1000];
  std::size_t total = 0;
  while (const std::size_t n = d->output(buf)) {
    ASSERT_LE(n, sizeof buf);
    total += n;
  }
  d->finish();
  EXPECT_EQ(total, bomb_bytes);
}

// ---- zstd windows ----------------------------------------------------------------

// A frame of "hello" as one raw block, with a window descriptor and no
// content size (so the window is what the descriptor says).
std::string zstd_frame(unsigned char window_descriptor) {
  std::string f = "\x28\xb5\x2f\xfd"s;
  f += '\0';  // frame header descriptor: no content size, not single-segment
  f += static_cast<char>(window_descriptor);
  f += "\x29\x00\x00"s;  // the last block, raw, 5 bytes
  return f + "hello";
}

TEST(ContentDecoder, ZstdWindowOver8MiBThrows) {
  EXPECT_EQ(decode("zstd", zstd_frame((23 - 10) << 3)), "hello");  // 8 MiB
  // 8 MiB + 1/8: just over.
  EXPECT_EQ(protocol_error_of([&] { decode("zstd", zstd_frame(((23 - 10) << 3) | 1)); }),
            "bad zstd body: Frame requires too much memory for decoding");
  EXPECT_NE(protocol_error_of([&] { decode("zstd", zstd_frame((24 - 10) << 3)); }), "");

  // A real encoder's frame with a 16 MiB window (the size not known up
  // front, so the window is not shrunk to fit it).
  const std::string data = sample(1 << 20);
  encoder e(codec::zstd, 24);
  e.feed(data);
  const std::string big = e.finish();
  ASSERT_EQ(big[4] & 0x20, 0);  // not single-segment: byte 5 is the window descriptor
  ASSERT_EQ(static_cast<unsigned char>(big[5]) >> 3, 24 - 10);
  EXPECT_EQ(protocol_error_of([&] { decode("zstd", big); }),
            "bad zstd body: Frame requires too much memory for decoding");
  encoder ok(codec::zstd, 23);
  ok.feed(data);
  EXPECT_EQ(decode("zstd", ok.finish()), data);
}

// ---- decode_content --------------------------------------------------------------

response encoded_response(std::string_view coding, std::string body) {
  response r;
  r.status = 200;
  r.headers.add("Content-Type", "text/plain");
  if (!coding.empty()) r.headers.add("Content-Encoding", std::string(coding));
  r.body = std::move(body);
  return r;
}

TEST(ContentDecoder, DecodeContentDecodesWithinTheLimit) {
  const std::string data = sample(300 * 1024);
  response r = encoded_response("gzip", encode(codec::gzip, data));
  decode_content(r, data.size());
  EXPECT_EQ(r.body, data);
  EXPECT_FALSE(r.headers.contains("Content-Encoding"));
  EXPECT_EQ(r.headers.get("Content-Type"), "text/plain");

  response over = encoded_response("gzip", encode(codec::gzip, data));
  EXPECT_EQ(protocol_error_of([&] { decode_content(over, data.size() - 1); }),
            "decoded body exceeds " + std::to_string(data.size() - 1) + " bytes");
  response zero = encoded_response("br", encode(codec::br, "x"));
  EXPECT_THROW(decode_content(zero, 0), protocol_error);
  response empty = encoded_response("br", encode(codec::br, ""));
  decode_content(empty, 0);
  EXPECT_EQ(empty.body, "");
}

TEST(ContentDecoder, DecodeContentStopsABombAtTheLimit) {
  response r = encoded_response("zstd", bomb(codec::zstd));
  EXPECT_EQ(protocol_error_of([&] { decode_content(r, 1 << 20); }), "decoded body exceeds 1048576 bytes");
}

TEST(ContentDecoder, DecodeContentReadsEveryContentEncodingField) {
  const std::string data = sample(10000);
  response r = encoded_response("gzip", encode(codec::br, encode(codec::gzip, data)));
  r.headers.add("Content-Encoding", "br");
  decode_content(r, 1 << 20);
  EXPECT_EQ(r.body, data);
  EXPECT_FALSE(r.headers.contains("Content-Encoding"));
}

TEST(ContentDecoder, DecodeContentLeavesOthersAlone) {
  response unknown = encoded_response("compress", "abc");
  decode_content(unknown, 1);
  EXPECT_EQ(unknown.body, "abc");
  EXPECT_EQ(unknown.headers.get("Content-Encoding"), "compress");
  response identity = encoded_response("identity", "abc");
  decode_content(identity, 1);
  EXPECT_EQ(identity.body, "abc");
  EXPECT_EQ(identity.headers.get("Content-Encoding"), "identity");
  response none = encoded_response("", "abc");
  decode_content(none, 1);
  EXPECT_EQ(none.body, "abc");
  response corrupt = encoded_response("deflate", "\x78\x9c\xff\xff"s);
  EXPECT_EQ(protocol_error_of([&] { decode_content(corrupt, 100); }), "bad deflate body: invalid block type");
}

}  // namespace
}  // namespace spindle::http
