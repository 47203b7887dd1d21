#pragma once
// The codec section of the benchmark: no Redis. Serializers (encode and decode of the product
// list, nlohmann's JSON and MessagePack against msgpack-cxx and cereal) and compressors (LZ4 and
// zstd on 2 KB, 64 KB and 1 MB values of the payload's shape), each printed as a table.

#include "bench_support.hpp"

#include <cacheaside/codec/lz4.hpp>
#include <cacheaside/codec/msgpack.hpp>
#include <cacheaside/codec/zstd.hpp>
#include <cacheaside/serializer.hpp>

#if __has_include(<cereal/archives/binary.hpp>)
#include <cereal/archives/binary.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#define CACHEASIDE_BENCH_CEREAL 1
#endif

#include <cstdio>
#include <functional>
#include <istream>
#include <ostream>
#include <streambuf>
#include <string>
#include <vector>

namespace bench {

/// Keeps a value alive in the optimizer's eyes.
template <typename T> void keep(const T& value) {
  __asm__ __volatile__("" : : "g"(&value) : "memory");
}

/// Microseconds per call of fn: calls it until at least `slice` has passed (3 calls at least).
inline double microsPerCall(const std::function<void()>& fn, std::chrono::milliseconds slice) {
  long calls = 0;
  const auto t0 = Clock::now();
  auto t1 = t0;
  while (calls < 3 || t1 - t0 < slice) {
    fn();
    ++calls;
    t1 = Clock::now();
  }
  return std::chrono::duration<double, std::micro>(t1 - t0).count() / static_cast<double>(calls);
}

/// Runs every case `reps` times, round-robin; returns the median µs per call of each.
inline std::vector<double> medianMicros(const std::vector<std::function<void()>>& cases, int reps,
                                        std::chrono::milliseconds slice) {
  std::vector<std::vector<double>> runs(cases.size());
  for (int rep = 0; rep < reps; ++rep) {
    for (std::size_t c = 0; c < cases.size(); ++c) {
      runs[c].push_back(microsPerCall(cases[c], slice));
    }
  }
  std::vector<double> out;
  for (auto& r : runs) {
    out.push_back(median(r));
  }
  return out;
}

#ifdef CACHEASIDE_BENCH_CEREAL
// std::streambufs over a string and over bytes, so that cereal pays no stringstream copy.
struct AppendBuf : std::streambuf {
  explicit AppendBuf(std::string& s) : out(s) {}
  std::streamsize xsputn(const char* p, std::streamsize n) override {
    out.append(p, static_cast<std::size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) {
      out.push_back(static_cast<char>(c));
    }
    return c;
  }
  std::string& out;
};

struct ViewBuf : std::streambuf {
  explicit ViewBuf(std::string_view bytes) {
    char* p = const_cast<char*>(bytes.data());
    setg(p, p, p + bytes.size());
  }
};
#endif

/// A value of the payload's shape and at least `size` bytes of JSON: the product list repeated,
/// ids renumbered so that no two products are byte-identical.
inline Products repeatedProducts(const Products& products, std::size_t size) {
  Products out;
  std::size_t bytes = 2; // []
  for (int round = 0; bytes < size; ++round) {
    for (Product p : products) {
      p.id += round * static_cast<int>(products.size());
      bytes += nlohmann::json(p).dump().size() + 1;
      out.push_back(std::move(p));
      if (bytes >= size) {
        break;
      }
    }
  }
  return out;
}

inline void serializerTable(const Products& products, int reps) {
  using JsonS = cacheaside::JsonSerializer<Products>;
  using NlohmannMsgpackS = cacheaside::MsgPackSerializer<Products>;
  using FastS = cacheaside::MsgpackSerializer<Products>;
  struct Format {
    std::string name;
    std::string bytes;
    std::function<void()> encode;
    std::function<void()> decode;
  };
  std::vector<Format> formats;
  const auto add = [&](std::string name, auto encode, auto decode) {
    std::string bytes;
    encode(bytes);
    if (decode(bytes).size() != products.size()) {
      throw std::runtime_error("bench: " + name + " did not round-trip");
    }
    Format f{std::move(name), bytes, {}, {}};
    f.encode = [encode] {
      std::string out;
      encode(out);
      keep(out);
    };
    f.decode = [decode, stored = std::move(bytes)] { keep(decode(stored)); };
    formats.push_back(std::move(f));
  };
  add(
      "nlohmann JSON (the default)", [&](std::string& out) { JsonS::encode(products, out); },
      [](const std::string& b) { return JsonS::decode(b); });
  add(
      "nlohmann MessagePack (MsgPackSerializer)",
      [&](std::string& out) { NlohmannMsgpackS::encode(products, out); },
      [](const std::string& b) { return NlohmannMsgpackS::decode(b); });
  add(
      "msgpack-cxx (codec/msgpack.hpp MsgpackSerializer)",
      [&](std::string& out) { FastS::encode(products, out); },
      [](const std::string& b) { return FastS::decode(b); });
#ifdef CACHEASIDE_BENCH_CEREAL
  add(
      "cereal binary (for comparison, not shipped)",
      [&](std::string& out) {
        AppendBuf buf(out);
        std::ostream os(&buf);
        cereal::BinaryOutputArchive archive(os);
        archive(products);
      },
      [](const std::string& b) {
        ViewBuf buf(b);
        std::istream is(&buf);
        cereal::BinaryInputArchive archive(is);
        Products out;
        archive(out);
        return out;
      });
#endif
  std::vector<std::function<void()>> cases;
  for (const auto& f : formats) {
    cases.push_back(f.encode);
    cases.push_back(f.decode);
  }
  cases.push_back([&products] { keep(Products(products)); });
  const std::vector<double> us = medianMicros(cases, reps, std::chrono::milliseconds(40));
  const double jsonDecode = us[1];
  const double jsonEncode = us[0];
  Table table({"format (20-product payload)", "bytes", "encode", "decode", "encode ÷ JSON",
               "decode ÷ JSON"});
  for (std::size_t i = 0; i < formats.size(); ++i) {
    table.add({formats[i].name, std::to_string(formats[i].bytes.size()),
               format("%.2f µs", us[2 * i]), format("%.2f µs", us[2 * i + 1]),
               format("%.3f", us[2 * i] / jsonEncode), format("%.3f", us[2 * i + 1] / jsonDecode)});
  }
  table.add({"(copying the decoded vector)", "", "", format("%.2f µs", us.back()), "",
             format("%.3f", us.back() / jsonDecode)});
#ifndef CACHEASIDE_BENCH_CEREAL
  table.add({"cereal: not installed (apt-get install libcereal-dev)", "", "", "", "", ""});
#endif
  std::printf("\nserializers: median of %d interleaved runs of at least 40 ms each\n\n", reps);
  table.print(stdout);
}

inline void compressorTable(const Products& products, int reps) {
  const cacheaside::Lz4Compressor lz4;
  const cacheaside::ZstdCompressor zstd;
  struct Row {
    std::string label;
    const cacheaside::Compressor* c;
    std::string value;
    std::string packed;
  };
  std::vector<Row> rows;
  for (std::size_t size : {std::size_t{2} << 10, std::size_t{64} << 10, std::size_t{1} << 20}) {
    std::string value;
    cacheaside::JsonSerializer<Products>::encode(repeatedProducts(products, size), value);
    for (const cacheaside::Compressor* c :
         std::initializer_list<const cacheaside::Compressor*>{&lz4, &zstd}) {
      Row r{format("%s, %zu B", c == &lz4 ? "LZ4" : "zstd level 3", value.size()), c, value, {}};
      c->compress(r.value, r.packed);
      std::string back;
      if (!c->decompress(r.packed, back, r.value.size()) || back != r.value) {
        throw std::runtime_error("bench: " + r.label + " did not round-trip");
      }
      rows.push_back(std::move(r));
    }
  }
  std::vector<std::function<void()>> cases;
  for (const Row& r : rows) {
    cases.push_back([&r] {
      std::string out;
      r.c->compress(r.value, out);
      keep(out);
    });
    cases.push_back([&r] {
      std::string out;
      if (!r.c->decompress(r.packed, out, r.value.size())) {
        throw std::runtime_error("bench: decompression failed");
      }
      keep(out);
    });
  }
  const std::vector<double> us = medianMicros(cases, reps, std::chrono::milliseconds(40));
  Table table({"compressor, JSON value of the payload's shape", "compress", "decompress",
               "compressed", "ratio"});
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const double mb = static_cast<double>(rows[i].value.size()) / 1e6;
    table.add({rows[i].label, format("%.1f µs (%.0f MB/s)", us[2 * i], mb / us[2 * i] * 1e6),
               format("%.1f µs (%.0f MB/s)", us[2 * i + 1], mb / us[2 * i + 1] * 1e6),
               format("%zu B", rows[i].packed.size()),
               format("%.2f", static_cast<double>(rows[i].value.size()) /
                                  static_cast<double>(rows[i].packed.size()))});
  }
  std::printf("\ncompressors: the product list repeated (ids renumbered) to the size, as JSON; "
              "median of %d interleaved runs of at least 40 ms each; ratio = original ÷ "
              "compressed\n\n",
              reps);
  table.print(stdout);
}

/// The codec section: both tables.
inline void codecSection(const Products& products, int reps) {
  serializerTable(products, reps);
  compressorTable(products, reps);
}

} // namespace bench
