#pragma once
/// \file codec/serializer.hpp
/// Serializers turn a T into the payload bytes stored in Redis and back.
///
/// A serializer is any type S with
///   static void encode(const T& value, std::string& out);   // appends the bytes to out
///   static T decode(std::string_view bytes);                // throws on bytes it cannot read
/// CacheAside<T> uses cacheaside::Serializer<T> unless told otherwise: JSON through nlohmann's
/// to_json/from_json for any T, the bytes as they are for std::string. Specialize
/// cacheaside::Serializer<T> for a type you want stored another way, or pass one of
/// JsonSerializer, MsgPackSerializer, CborSerializer, RawStringSerializer explicitly.

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace cacheaside {

namespace detail {

template <typename T, typename = void> struct HasToJson : std::false_type {};
template <typename T>
struct HasToJson<T, std::void_t<decltype(nlohmann::adl_serializer<T>::to_json(
                        std::declval<nlohmann::json&>(), std::declval<const T&>()))>>
    : std::true_type {};

template <typename T, typename = void> struct HasFromJson : std::false_type {};
template <typename T>
struct HasFromJson<T, std::void_t<decltype(std::declval<const nlohmann::json&>().get<T>())>>
    : std::true_type {};

template <typename T>
inline constexpr bool kJsonSerializable = HasToJson<T>::value&& HasFromJson<T>::value;

template <typename T> void requireJsonSerializable() {
  static_assert(kJsonSerializable<T>,
                "cacheaside: T cannot be converted to and from JSON. Give it to_json/from_json "
                "(NLOHMANN_DEFINE_TYPE_INTRUSIVE or NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE), "
                "specialize nlohmann::adl_serializer<T>, or pass CacheAside a Serializer.");
}

} // namespace detail

/// JSON text through nlohmann::json and the type's to_json/from_json.
template <typename T> struct JsonSerializer {
  /// Appends the JSON text of value to out.
  static void encode(const T& value, std::string& out) {
    detail::requireJsonSerializable<T>();
    out += nlohmann::json(value).dump();
  }
  /// Parses bytes as JSON into a T; throws nlohmann::json::exception on bad bytes.
  static T decode(std::string_view bytes) {
    detail::requireJsonSerializable<T>();
    return nlohmann::json::parse(bytes.begin(), bytes.end()).template get<T>();
  }
};

/// MessagePack through nlohmann::json: smaller and faster to decode than JSON text.
template <typename T> struct MsgPackSerializer {
  /// Appends the MessagePack encoding of value to out.
  static void encode(const T& value, std::string& out) {
    detail::requireJsonSerializable<T>();
    nlohmann::json::to_msgpack(nlohmann::json(value), nlohmann::detail::output_adapter<char>(out));
  }
  /// Decodes MessagePack bytes into a T; throws nlohmann::json::exception on bad bytes.
  static T decode(std::string_view bytes) {
    detail::requireJsonSerializable<T>();
    return nlohmann::json::from_msgpack(bytes.begin(), bytes.end()).template get<T>();
  }
};

/// CBOR (RFC 8949) through nlohmann::json.
template <typename T> struct CborSerializer {
  /// Appends the CBOR encoding of value to out.
  static void encode(const T& value, std::string& out) {
    detail::requireJsonSerializable<T>();
    nlohmann::json::to_cbor(nlohmann::json(value), nlohmann::detail::output_adapter<char>(out));
  }
  /// Decodes CBOR bytes into a T; throws nlohmann::json::exception on bad bytes.
  static T decode(std::string_view bytes) {
    detail::requireJsonSerializable<T>();
    return nlohmann::json::from_cbor(bytes.begin(), bytes.end()).template get<T>();
  }
};

/// std::string stored byte for byte: any bytes, including NUL and invalid UTF-8.
struct RawStringSerializer {
  /// Appends value to out.
  static void encode(const std::string& value, std::string& out) { out += value; }
  /// Returns the bytes.
  static std::string decode(std::string_view bytes) { return std::string(bytes); }
};

/// The serializer CacheAside<T> uses by default, and the customization point for types you do
/// not own: JSON for every T, except std::string, which is stored raw.
template <typename T> struct Serializer : JsonSerializer<T> {};

/// std::string is stored raw, not as a JSON string literal.
template <> struct Serializer<std::string> : RawStringSerializer {};

} // namespace cacheaside
