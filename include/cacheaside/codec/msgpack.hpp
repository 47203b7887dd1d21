#pragma once
/// \file codec/msgpack.hpp
/// MsgpackSerializer: MessagePack through msgpack-cxx and the type's own msgpack adaptor
/// (MSGPACK_DEFINE, MSGPACK_DEFINE_MAP, MSGPACK_ADD_ENUM or a msgpack::adaptor specialization).
/// Decodes straight into T, with no intermediate tree: several times faster than JSON or
/// nlohmann's MessagePack. Opt-in: cacheaside.hpp does not include this header.
///
///   struct Product { int id; std::string name; MSGPACK_DEFINE(id, name) };
///   cacheaside::CacheAside<Product, cacheaside::MsgpackSerializer<Product>> cache(client,
///   options);
///
/// Needs msgpack-cxx 4 (Debian: libmsgpack-cxx-dev), header-only; works with and without
/// MSGPACK_NO_BOOST. Not wire-compatible with MsgPackSerializer in serializer.hpp, which writes
/// nlohmann's layout (objects as maps with their key names).

#include <msgpack.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <deque>
#include <forward_list>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace cacheaside {

namespace detail {

template <typename T, typename = void> struct HasMsgpackMembers : std::false_type {};
template <typename T>
struct HasMsgpackMembers<T, std::void_t<decltype(std::declval<const T&>().msgpack_pack(
                                            std::declval<msgpack::packer<msgpack::sbuffer>&>())),
                                        decltype(std::declval<T&>().msgpack_unpack(
                                            std::declval<const msgpack::object&>()))>>
    : std::true_type {};

// msgpack-cxx's primary adaptor of each API version derives from the one of the version below;
// a specialization (MSGPACK_ADD_ENUM, or one written in MSGPACK_DEFAULT_API_NS as msgpack's
// documentation shows) breaks that chain.
template <template <typename, typename> class V3, template <typename, typename> class V2,
          template <typename, typename> class V1, typename T>
inline constexpr bool kMsgpackLayerSpecialized =
    !std::is_base_of_v<V2<T, void>, V3<T, void>> || !std::is_base_of_v<V1<T, void>, V2<T, void>>;

template <typename T>
inline constexpr bool kMsgpackSpecialized =
    kMsgpackLayerSpecialized<msgpack::v3::adaptor::pack, msgpack::v2::adaptor::pack,
                             msgpack::v1::adaptor::pack, T>&&
        kMsgpackLayerSpecialized<msgpack::v3::adaptor::convert, msgpack::v2::adaptor::convert,
                                 msgpack::v1::adaptor::convert, T>;

} // namespace detail

/// Whether T can be packed and unpacked by msgpack-cxx: arithmetic types, std::string, the
/// standard containers, tuples, optionals and smart pointers of such types, types with
/// MSGPACK_DEFINE members, and types with msgpack::adaptor pack and convert specializations in
/// the default API namespace. Specialize it as std::true_type for an adaptor this check cannot
/// see (one written in msgpack's v1 namespace, for instance).
template <typename T>
struct MsgpackAdapted
    : std::bool_constant<std::is_arithmetic_v<T> || detail::HasMsgpackMembers<T>::value ||
                         detail::kMsgpackSpecialized<T>> {};

/// std::string: a MessagePack str.
template <typename C, typename Tr, typename A>
struct MsgpackAdapted<std::basic_string<C, Tr, A>> : std::true_type {};
/// std::vector of adapted values.
template <typename U, typename A> struct MsgpackAdapted<std::vector<U, A>> : MsgpackAdapted<U> {};
/// std::deque of adapted values.
template <typename U, typename A> struct MsgpackAdapted<std::deque<U, A>> : MsgpackAdapted<U> {};
/// std::list of adapted values.
template <typename U, typename A> struct MsgpackAdapted<std::list<U, A>> : MsgpackAdapted<U> {};
/// std::forward_list of adapted values.
template <typename U, typename A>
struct MsgpackAdapted<std::forward_list<U, A>> : MsgpackAdapted<U> {};
/// std::array of adapted values.
template <typename U, std::size_t N> struct MsgpackAdapted<std::array<U, N>> : MsgpackAdapted<U> {};
/// std::set of adapted values.
template <typename U, typename C, typename A>
struct MsgpackAdapted<std::set<U, C, A>> : MsgpackAdapted<U> {};
/// std::multiset of adapted values.
template <typename U, typename C, typename A>
struct MsgpackAdapted<std::multiset<U, C, A>> : MsgpackAdapted<U> {};
/// std::unordered_set of adapted values.
template <typename U, typename H, typename E, typename A>
struct MsgpackAdapted<std::unordered_set<U, H, E, A>> : MsgpackAdapted<U> {};
/// std::map of adapted keys and values.
template <typename K, typename V, typename C, typename A>
struct MsgpackAdapted<std::map<K, V, C, A>>
    : std::bool_constant<MsgpackAdapted<K>::value && MsgpackAdapted<V>::value> {};
/// std::multimap of adapted keys and values.
template <typename K, typename V, typename C, typename A>
struct MsgpackAdapted<std::multimap<K, V, C, A>>
    : std::bool_constant<MsgpackAdapted<K>::value && MsgpackAdapted<V>::value> {};
/// std::unordered_map of adapted keys and values.
template <typename K, typename V, typename H, typename E, typename A>
struct MsgpackAdapted<std::unordered_map<K, V, H, E, A>>
    : std::bool_constant<MsgpackAdapted<K>::value && MsgpackAdapted<V>::value> {};
/// std::pair of adapted values.
template <typename A, typename B>
struct MsgpackAdapted<std::pair<A, B>>
    : std::bool_constant<MsgpackAdapted<A>::value && MsgpackAdapted<B>::value> {};
/// std::tuple of adapted values.
template <typename... Us>
struct MsgpackAdapted<std::tuple<Us...>> : std::bool_constant<(MsgpackAdapted<Us>::value && ...)> {
};
/// std::optional of an adapted value (nil when empty).
template <typename U> struct MsgpackAdapted<std::optional<U>> : MsgpackAdapted<U> {};
/// std::shared_ptr of an adapted value (nil when null).
template <typename U> struct MsgpackAdapted<std::shared_ptr<U>> : MsgpackAdapted<U> {};
/// std::unique_ptr of an adapted value (nil when null).
template <typename U, typename D>
struct MsgpackAdapted<std::unique_ptr<U, D>> : MsgpackAdapted<U> {};
/// std::chrono::duration: its count.
template <typename R, typename P>
struct MsgpackAdapted<std::chrono::duration<R, P>> : std::true_type {};
/// std::chrono::time_point: a MessagePack timestamp.
template <typename C, typename D>
struct MsgpackAdapted<std::chrono::time_point<C, D>> : std::true_type {};

namespace detail {

template <typename T> void requireMsgpackAdapted() {
  static_assert(MsgpackAdapted<T>::value,
                "cacheaside: MsgpackSerializer<T> needs a msgpack-cxx adaptor for T (and for "
                "every type inside it). Add MSGPACK_DEFINE(members...) to the struct, "
                "MSGPACK_ADD_ENUM(E) for an enum, or specialize msgpack::adaptor::pack and "
                "msgpack::adaptor::convert; if T has an adaptor this check does not see, "
                "specialize cacheaside::MsgpackAdapted<T> as std::true_type.");
}

// msgpack::packer's stream: appends to the caller's string, no intermediate buffer.
struct MsgpackStringSink {
  std::string& out;
  void write(const char* data, std::size_t size) { out.append(data, size); }
};

// Strings and binaries of the unpacked tree point into the input, which outlives the tree:
// convert() copies them into T once, instead of twice.
inline bool msgpackReferenceAll(msgpack::type::object_type, std::size_t, void*) {
  return true;
}

} // namespace detail

/// MessagePack through msgpack-cxx and T's msgpack adaptor; see the file comment.
template <typename T> struct MsgpackSerializer {
  /// Appends the MessagePack encoding of value to out.
  static void encode(const T& value, std::string& out) {
    detail::requireMsgpackAdapted<T>();
    detail::MsgpackStringSink sink{out};
    msgpack::pack(sink, value);
  }

  /// Decodes exactly one MessagePack object into a T. Throws a std::exception (msgpack's
  /// parse_error, insufficient_bytes, type_error, or std::runtime_error for trailing bytes)
  /// when bytes are not one such object of T's shape. No container, string or binary length
  /// may exceed the input's size, so a short foreign input cannot make it allocate much.
  static T decode(std::string_view bytes) {
    detail::requireMsgpackAdapted<T>();
    const std::size_t n = bytes.size();
    const msgpack::unpack_limit limit(n, n, n, n, n, n + 1);
    std::size_t offset = 0;
    const msgpack::object_handle handle =
        msgpack::unpack(bytes.data(), n, offset, &detail::msgpackReferenceAll, nullptr, limit);
    if (offset != n) {
      throw std::runtime_error("cacheaside: trailing bytes after a MessagePack value");
    }
    return handle.get().as<T>();
  }
};

} // namespace cacheaside
