// Private to proxy: the fields the HTTP/2 sides (h2_session.cpp to clients, h2_upstream.cpp
// to backends) send: their names lowercased, as HTTP/2 requires, and how nghttp2's HPACK
// encoder is asked to treat each. A field whose value is new on every message goes out as a
// literal never indexed (RFC 7541 6.2.3; nghttp2 offers no other way to keep one field out of
// its table): indexing it buys nothing, evicts entries that do repeat (content-type, the
// version stamps) from the 4 KiB dynamic table, and fills that table with entries of one
// name, which nghttp2's encoder then walked one by one (about 60 compares) for every field of
// that name it encoded. nghttp2 itself keeps :path, content-length and a few more out.
#pragma once

#include <nghttp2/nghttp2.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace stagegate::proxy {

// Lowercases a field name in place, as HTTP/2 sends names, 8 bytes at a time (names are
// short, and a byte loop cost more than the rest of a field's handling); false when a byte
// cannot be in a name (controls, space, DEL, non-ASCII), the name then half lowercased. Each
// test below works on a byte's low 7 bits, to which adding at most 0x5f carries into no
// other byte.
[[nodiscard]] inline bool lowercase_field_name(char* name, std::size_t size) {
    static_assert(std::endian::native == std::endian::little, "the tail's mask takes low bytes");
    constexpr std::uint64_t ones = 0x0101010101010101ull;
    constexpr std::uint64_t highs = 0x8080808080808080ull;
    std::uint64_t bad = 0;
    auto word = [&](std::uint64_t w, std::uint64_t used) {
        const std::uint64_t low7 = w & ~highs;
        const std::uint64_t at_least_a = low7 + ones * (0x80 - 'A');  // high bit: >= 'A'
        const std::uint64_t past_z = low7 + ones * (0x7f - 'Z');      // high bit: > 'Z'
        const std::uint64_t past_space = low7 + ones * (0x7f - ' ');  // high bit: > ' '
        const std::uint64_t del = low7 + ones;                        // high bit: 0x7f
        bad |= (w | ~past_space | del) & highs & used;
        return w | (((at_least_a ^ past_z) & highs) >> 2);  // +0x20 for 'A'..'Z'
    };
    std::size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, name + i, 8);
        w = word(w, ~std::uint64_t{0});
        std::memcpy(name + i, &w, 8);
    }
    if (const auto rest = size - i; rest > 0) {
        std::uint64_t w = 0;
        std::memcpy(&w, name + i, rest);
        w = word(w, (std::uint64_t{1} << (8 * rest)) - 1);  // the bytes after the name are 0
        std::memcpy(name + i, &w, rest);
    }
    return bad == 0;
}

// Whether two strings are equal with ASCII letters compared case aside (other bytes exactly).
inline bool ascii_iequal(std::string_view a, std::string_view b) {
    auto lower = [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return static_cast<unsigned char>(u + (static_cast<unsigned>(u - 'A') < 26u ? 32 : 0));
    };
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

// name: lowercase, as HTTP/2 sends it.
inline std::uint8_t hpack_flags(std::string_view name) {
    using namespace std::string_view_literals;
    // A gRPC client's grpc-timeout is its remaining deadline, in its own unit: new per call.
    const bool unique_per_message =
        name == "x-request-id"sv || name == "traceparent"sv || name == "grpc-timeout"sv;
    return unique_per_message ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
}

// One field for nghttp2 (which copies it on submit), with hpack_flags. `name`: lowercase.
inline nghttp2_nv make_nv(std::string_view name, std::string_view value) {
    return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                      reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())),
                      name.size(), value.size(), hpack_flags(name)};
}

}  // namespace stagegate::proxy
