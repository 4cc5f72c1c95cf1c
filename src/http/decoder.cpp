// content_decoder: one stage per coding (zlib for gzip and deflate,
// libbrotlidec, libzstd), chained through fixed buffers.
//
// Invariants:
// 1. A stage's output() writes at most out.size() bytes and returns 0 only
//    when its input is all consumed (or is being ignored after the end of
//    its stream) and nothing decoded is pending inside the library.
// 2. So a chain's output() returning 0 means every stage has consumed its
//    input, and the next input() may reuse the buffers.
// 3. Memory does not depend on the input: each library's window is capped
//    (zstd explicitly, the others by their formats) and the buffers between
//    stages are stage_buffer_bytes each.

#include "spindle/http/decoder.hpp"

#include <brotli/decode.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <new>

namespace spindle::http {

namespace detail {

/// One coding's decoder. Input is a span the stage advances as it consumes.
class decoder_stage {
 public:
  explicit decoder_stage(const char* name) : name_(name) {}
  virtual ~decoder_stage() = default;
  decoder_stage(const decoder_stage&) = delete;
  decoder_stage& operator=(const decoder_stage&) = delete;

  void input(std::span<const char> in) noexcept { in_ = in; }
  [[nodiscard]] bool consumed() const noexcept { return in_.empty(); }
  /// See invariant 1. `out` is not empty.
  virtual std::size_t output(std::span<char> out) = 0;
  /// At the end of a stream (between gzip members or zstd frames): a body
  /// may stop here.
  [[nodiscard]] virtual bool ended() const noexcept = 0;
  /// Ended, and whatever follows is ignored: the stages before this one
  /// need not run any more.
  [[nodiscard]] virtual bool done() const noexcept { return false; }

  [[noreturn]] void fail(std::string_view why) const {
    throw protocol_error("bad " + std::string(name_) + " body: " + std::string(why));
  }

 protected:
  std::span<const char> in_;

 private:
  const char* name_;
};

}  // namespace detail

namespace {

using detail::decoder_stage;

// zlib counts in uInt: a larger span is handed over in parts.
uInt clamp_uint(std::size_t n) noexcept { return static_cast<uInt>(std::min<std::size_t>(n, UINT_MAX)); }

// gzip (one or more members) or deflate (zlib-wrapped or raw).
class zlib_stage final : public decoder_stage {
 public:
  explicit zlib_stage(bool gzip)
      : decoder_stage(gzip ? "gzip" : "deflate"),
        gzip_(gzip),
        state_(gzip ? state::inflating : state::detect) {
    if (gzip_) init(15 + 16);
  }
  ~zlib_stage() override {
    if (initialised_) inflateEnd(&z_);
  }

  std::size_t output(std::span<char> out) override {
    for (;;) {
      if (state_ == state::detect || state_ == state::member_end) {
        if (!take_head()) return 0;  // all input consumed into head_
        start();
      }
      if (state_ == state::done) {
        in_ = {};
        return 0;
      }
      // Whatever of head_ was not fed yet goes first.
      const bool from_head = head_pos_ < head_len_;
      const char* src = from_head ? head_ + head_pos_ : in_.data();
      const uInt avail = from_head ? static_cast<uInt>(head_len_ - head_pos_) : clamp_uint(in_.size());
      z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(src));
      z_.avail_in = avail;
      const uInt room = clamp_uint(out.size());
      z_.next_out = reinterpret_cast<Bytef*>(out.data());
      z_.avail_out = room;
      const int r = inflate(&z_, Z_NO_FLUSH);
      const std::size_t used = avail - z_.avail_in;
      if (from_head) {
        head_pos_ += used;
      } else {
        in_ = in_.subspan(used);
      }
      const std::size_t n = room - z_.avail_out;
      switch (r) {
        case Z_STREAM_END:
          // Unfed head bytes can only be left by a raw deflate stream that
          // ended within its first two bytes; they follow the end: ignored.
          head_len_ = head_pos_ = 0;
          state_ = gzip_ ? state::member_end : state::done;
          break;
        case Z_OK: break;
        case Z_BUF_ERROR: return n;  // no progress possible: input exhausted
        case Z_NEED_DICT: fail("needs a preset dictionary");
        case Z_MEM_ERROR: throw std::bad_alloc();
        default: fail(z_.msg != nullptr ? z_.msg : "corrupt");
      }
      if (n > 0) return n;
      // Nothing came out although there was room: zlib has nothing pending.
      if (state_ == state::inflating && head_pos_ == head_len_ && in_.empty()) return 0;
    }
  }

  [[nodiscard]] bool ended() const noexcept override {
    return state_ == state::member_end || state_ == state::done;
  }
  [[nodiscard]] bool done() const noexcept override { return state_ == state::done; }

 private:
  enum class state {
    detect,      // deflate: the first two bytes tell zlib-wrapped from raw
    inflating,   // in a stream
    member_end,  // gzip: a member ended; two more bytes tell a next member from trailing data
    done,        // the stream ended; the rest is ignored
  };

  void init(int window_bits) {
    if (inflateInit2(&z_, window_bits) != Z_OK) throw std::bad_alloc();
    initialised_ = true;
  }

  // Moves input into head_ until it holds two bytes. A first input of one
  // byte (or a chain's piece ending after one) is why it is kept here.
  bool take_head() noexcept {
    while (head_len_ < 2 && !in_.empty()) {
      head_[head_len_++] = in_.front();
      in_ = in_.subspan(1);
    }
    return head_len_ == 2;
  }

  // With head_ full: how to go on.
  void start() {
    const auto b0 = static_cast<unsigned char>(head_[0]), b1 = static_cast<unsigned char>(head_[1]);
    if (state_ == state::detect) {
      // RFC 1950: CM = 8 (deflate) and the header is a multiple of 31.
      // Servers that send raw deflate (RFC 1951) are common enough to accept.
      const bool zlib_wrapped = (b0 & 0x0f) == 8 && (b0 * 256 + b1) % 31 == 0;
      init(zlib_wrapped ? 15 : -15);
      state_ = state::inflating;
    } else if (b0 == 0x1f && b1 == 0x8b) {  // the next gzip member
      inflateReset(&z_);
      state_ = state::inflating;
    } else {
      state_ = state::done;  // trailing data (zero padding, junk): ignored as gunzip does
    }
    head_pos_ = 0;
  }

  z_stream z_{};
  bool initialised_ = false;
  bool gzip_;
  state state_;
  char head_[2] = {};
  std::size_t head_len_ = 0, head_pos_ = 0;  // head_[head_pos_, head_len_) is not fed to zlib yet
};

// br (RFC 7932). Large windows (a non-standard extension) stay off, so the
// window is at most 16 MiB.
class brotli_stage final : public decoder_stage {
 public:
  brotli_stage() : decoder_stage("br"), s_(BrotliDecoderCreateInstance(nullptr, nullptr, nullptr)) {
    if (s_ == nullptr) throw std::bad_alloc();
  }
  ~brotli_stage() override { BrotliDecoderDestroyInstance(s_); }

  std::size_t output(std::span<char> out) override {
    for (;;) {
      if (ended_) {
        in_ = {};  // after the end: ignored
        return 0;
      }
      std::size_t avail_in = in_.size(), avail_out = out.size();
      const auto* next_in = reinterpret_cast<const std::uint8_t*>(in_.data());
      auto* next_out = reinterpret_cast<std::uint8_t*>(out.data());
      const BrotliDecoderResult r =
          BrotliDecoderDecompressStream(s_, &avail_in, &next_in, &avail_out, &next_out, nullptr);
      const bool progress = avail_in != in_.size() || avail_out != out.size();
      in_ = in_.subspan(in_.size() - avail_in);
      const std::size_t n = out.size() - avail_out;
      switch (r) {
        case BROTLI_DECODER_RESULT_SUCCESS: ended_ = true; break;  // everything written out
        case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
          if (n > 0 || in_.empty()) return n;
          break;
        case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT:
          if (n > 0) return n;
          break;
        default: fail(error_text());
      }
      if (n > 0) return n;
      if (!progress && !ended_) fail("no progress");  // never expected; an endless loop otherwise
    }
  }

  [[nodiscard]] bool ended() const noexcept override { return ended_; }
  [[nodiscard]] bool done() const noexcept override { return ended_; }

 private:
  // "_ERROR_FORMAT_PADDING_1" -> "format padding 1".
  std::string error_text() const {
    std::string s = BrotliDecoderErrorString(BrotliDecoderGetErrorCode(s_));
    if (s.starts_with("_ERROR_")) s.erase(0, 7);
    for (char& c : s) c = c == '_' ? ' ' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  BrotliDecoderState* s_;
  bool ended_ = false;
};

// zstd (RFC 8878), any number of frames, windows up to 8 MiB (RFC 9659).
class zstd_stage final : public decoder_stage {
 public:
  zstd_stage() : decoder_stage("zstd"), d_(ZSTD_createDCtx()) {
    if (d_ == nullptr) throw std::bad_alloc();
    const std::size_t r = ZSTD_DCtx_setParameter(d_, ZSTD_d_windowLogMax, 23);
    if (ZSTD_isError(r) != 0) {
      ZSTD_freeDCtx(d_);
      fail(ZSTD_getErrorName(r));
    }
  }
  ~zstd_stage() override { ZSTD_freeDCtx(d_); }

  std::size_t output(std::span<char> out) override {
    for (int stalls = 0;;) {
      ZSTD_inBuffer in{in_.data(), in_.size(), 0};
      ZSTD_outBuffer o{out.data(), out.size(), 0};
      const std::size_t r = ZSTD_decompressStream(d_, &o, &in);
      if (ZSTD_isError(r) != 0) fail(ZSTD_getErrorName(r));
      in_ = in_.subspan(in.pos);
      // 0: a frame ended and is all written out; a call that starts the
      // next frame makes this false again. A call that did nothing returns
      // the next frame's header size even at a frame's end: not a change.
      if (in.pos > 0 || o.pos > 0) at_frame_end_ = r == 0;
      if (o.pos > 0) return o.pos;
      if (in_.empty()) return 0;
      // zstd returns at each frame's end; anything else without progress
      // is not expected, but must not loop forever.
      if (in.pos == 0 && ++stalls > 16) fail("no progress");
    }
  }

  [[nodiscard]] bool ended() const noexcept override { return at_frame_end_; }

 private:
  ZSTD_DCtx* d_;
  bool at_frame_end_ = false;
};

// The canonical name of a coding we decode, "identity", or "" (unknown).
std::string_view canonical(std::string_view coding) noexcept {
  for (std::string_view known : {"gzip", "deflate", "br", "zstd", "identity"}) {
    if (iequals(coding, known)) return known;
  }
  return iequals(coding, "x-gzip") ? "gzip" : "";
}

std::unique_ptr<decoder_stage> make_stage(std::string_view coding) {
  if (coding == "gzip") return std::make_unique<zlib_stage>(true);
  if (coding == "deflate") return std::make_unique<zlib_stage>(false);
  if (coding == "br") return std::make_unique<brotli_stage>();
  return std::make_unique<zstd_stage>();
}

}  // namespace

std::unique_ptr<content_decoder> content_decoder::make(std::string_view content_encoding) {
  std::vector<std::string_view> codings;  // as listed: the order they were applied in
  std::size_t listed = 0;
  bool unknown = false;
  for (std::string_view rest = content_encoding; !rest.empty();) {
    const std::string_view element = next_list_element(rest);
    if (element.empty()) continue;  // "gzip, , br": empty list elements are allowed (RFC 9110 5.6.1)
    if (++listed > max_codings) {
      throw protocol_error("Content-Encoding lists more than " + std::to_string(max_codings) + " codings");
    }
    const std::string_view name = canonical(element);
    if (name.empty()) {
      unknown = true;  // keep counting: a long list is refused either way
    } else if (name != "identity") {
      codings.push_back(name);
    }
  }
  if (unknown || codings.empty()) return nullptr;

  std::unique_ptr<content_decoder> d(new content_decoder);
  for (auto it = codings.rbegin(); it != codings.rend(); ++it) d->stages_.push_back(make_stage(*it));
  for (std::string_view c : codings) {
    if (!d->codings_.empty()) d->codings_ += ", ";
    d->codings_ += c;
  }
  if (codings.size() > 1) {
    d->buffers_ = std::make_unique_for_overwrite<char[]>(stage_buffer_bytes * (codings.size() - 1));
  }
  return d;
}

content_decoder::~content_decoder() = default;

void content_decoder::input(std::span<const char> encoded) {
  if (!stages_.front()->consumed()) {
    throw usage_error("content_decoder::input before output() consumed the previous input");
  }
  stages_.front()->input(encoded);
  total_in_ += encoded.size();
}

std::size_t content_decoder::output(std::span<char> out) {
  if (out.empty()) throw usage_error("content_decoder::output into an empty buffer");
  const std::size_t n = pull(stages_.size() - 1, out);
  // 0 with raw input left: a later stage ignores what follows its end, so
  // this input is not needed either.
  if (n == 0) stages_.front()->input({});
  return n;
}

std::size_t content_decoder::pull(std::size_t i, std::span<char> out) {
  decoder_stage& s = *stages_[i];
  for (;;) {
    const std::size_t n = s.output(out);
    if (n > 0 || i == 0 || s.done()) return n;
    // Stage i consumed its buffer: refill it from the stage before.
    const std::span<char> buffer(buffers_.get() + (i - 1) * stage_buffer_bytes, stage_buffer_bytes);
    const std::size_t m = pull(i - 1, buffer);
    if (m == 0) return 0;
    s.input(buffer.first(m));
  }
}

void content_decoder::finish() {
  if (total_in_ == 0) return;  // an empty body (a 204, say) needs no coding's framing
  // The stages before one that ignores the rest of its input were stopped
  // (see pull()): only the ones from there on must have ended. The first
  // that has not names the outermost coding that was cut short.
  std::size_t first = 0;
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    if (stages_[i]->done()) first = i;
  }
  for (std::size_t i = first; i < stages_.size(); ++i) {
    if (!stages_[i]->ended()) stages_[i]->fail("truncated");
  }
}

void decode_content(response& r, std::uint64_t max_bytes) {
  // Several fields of one name are one comma-separated list (RFC 9110 5.3).
  std::string list;
  for (std::string_view v : r.headers.get_all("Content-Encoding")) {
    if (!list.empty()) list += ", ";
    list += v;
  }
  const std::unique_ptr<content_decoder> d = content_decoder::make(list);
  if (!d) return;  // nothing to do, or a coding we do not know: left as received

  constexpr std::size_t chunk = 64 * 1024;
  std::string out;
  d->input(r.body);
  for (;;) {
    // Ask for at most one byte past the limit: the body never grows beyond
    // max_bytes + 1 however well the input compresses.
    const std::uint64_t room = max_bytes - out.size();
    const std::size_t want = room >= chunk ? chunk : static_cast<std::size_t>(room) + 1;
    const std::size_t old = out.size();
    out.resize(old + want);
    const std::size_t n = d->output(std::span<char>(out).subspan(old));
    out.resize(old + n);
    if (out.size() > max_bytes) {
      throw protocol_error("decoded body exceeds " + std::to_string(max_bytes) + " bytes");
    }
    if (n == 0) break;
  }
  d->finish();
  r.body = std::move(out);
  r.headers.remove("Content-Encoding");
}

}  // namespace spindle::http
