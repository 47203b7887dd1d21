#pragma once
/// \file codec/zstd.hpp
/// ZstdCompressor: Zstandard frames, smaller than LZ4 at some CPU cost. Opt-in: link
/// cacheaside::zstd (libzstd; Debian: libzstd-dev).

#include <cacheaside/codec/compressor.hpp>

#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cacheaside {

namespace detail {

// Contexts kept for reuse: creating one per call costs more than compressing a 2 KB value.
// Holds at most as many as were ever in use at once; frees them with the compressor.
template <typename Ctx, Ctx* (*Create)(), std::size_t (*Free)(Ctx*)> class ZstdContextPool {
public:
  struct Deleter {
    void operator()(Ctx* c) const noexcept { Free(c); }
  };
  using Ptr = std::unique_ptr<Ctx, Deleter>;

  ZstdContextPool() = default;
  ZstdContextPool(const ZstdContextPool&) {}
  ZstdContextPool& operator=(const ZstdContextPool&) { return *this; }

  Ptr take() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        Ptr c = std::move(free_.back());
        free_.pop_back();
        return c;
      }
    }
    Ptr c(Create());
    if (!c) {
      throw std::bad_alloc();
    }
    return c;
  }

  void give(Ptr c) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(c));
  }

private:
  std::mutex mutex_;
  std::vector<Ptr> free_;
};

} // namespace detail

/// One Zstandard frame per value, with its content size in the frame header; id 2. Keeps the
/// zstd contexts it has created (about 100 KB to a few MB each, by level and value size) for
/// reuse, at most one per concurrent call, until it is destroyed. Thread-safe.
class ZstdCompressor final : public Compressor {
public:
  /// The id ZstdCompressor writes into records.
  static constexpr std::uint8_t kId = 2;
  /// The level used when none is given: zstd's own default.
  static constexpr int kDefaultLevel = 3;

  /// Compresses at level (ZSTD_minCLevel() to ZSTD_maxCLevel(); higher is smaller and
  /// slower); throws std::invalid_argument outside that range. Decompression works for frames
  /// of any level.
  explicit ZstdCompressor(int level = kDefaultLevel) : level_(level) {
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
      throw std::invalid_argument("cacheaside: zstd level out of range");
    }
  }

  /// Returns kId.
  std::uint8_t id() const noexcept override { return kId; }

  /// The compression level.
  int level() const noexcept { return level_; }

  /// Appends one zstd frame holding in to out; throws std::runtime_error if zstd fails.
  void compress(std::string_view in, std::string& out) const override {
    const std::size_t bound = ZSTD_compressBound(in.size());
    if (ZSTD_isError(bound)) {
      throw std::length_error("cacheaside: value too large for zstd");
    }
    const std::size_t start = out.size();
    out.resize(start + bound);
    auto ctx = compressors_.take();
    const std::size_t written =
        ZSTD_compressCCtx(ctx.get(), &out[start], bound, in.data(), in.size(), level_);
    compressors_.give(std::move(ctx));
    if (ZSTD_isError(written)) {
      out.resize(start);
      throw std::runtime_error(std::string("cacheaside: zstd compression failed: ") +
                               ZSTD_getErrorName(written));
    }
    out.resize(start + written);
  }

  /// Appends the decompressed bytes to out. Returns false, without allocating for it, when the
  /// frame header gives no content size or one above maxBytes; false when the frame is corrupt,
  /// truncated, followed by other data, or does not hold exactly that many bytes.
  bool decompress(std::string_view in, std::string& out, std::size_t maxBytes) const override {
    const unsigned long long size = ZSTD_getFrameContentSize(in.data(), in.size());
    if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR || size > maxBytes) {
      return false;
    }
    const std::size_t frame = ZSTD_findFrameCompressedSize(in.data(), in.size());
    if (ZSTD_isError(frame) || frame != in.size()) {
      return false;
    }
    const std::size_t start = out.size();
    out.resize(start + static_cast<std::size_t>(size));
    auto ctx = decompressors_.take();
    const std::size_t got = ZSTD_decompressDCtx(
        ctx.get(), &out[start], static_cast<std::size_t>(size), in.data(), in.size());
    decompressors_.give(std::move(ctx));
    if (ZSTD_isError(got) || got != size) {
      out.resize(start);
      return false;
    }
    return true;
  }

private:
  int level_;
  mutable detail::ZstdContextPool<ZSTD_CCtx, &ZSTD_createCCtx, &ZSTD_freeCCtx> compressors_;
  mutable detail::ZstdContextPool<ZSTD_DCtx, &ZSTD_createDCtx, &ZSTD_freeDCtx> decompressors_;
};

} // namespace cacheaside
