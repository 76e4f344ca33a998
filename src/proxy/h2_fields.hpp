// Private to proxy: the fields the HTTP/2 sides (h2_session.cpp to clients, h2_upstream.cpp
// to backends) send: their names lowercased, as HTTP/2 requires, and how nghttp2's HPACK
// encoder is asked to treat each. A field whose value is new on every message goes out as a
// literal never indexed (RFC 7541 6.2.3; nghttp2 offers no other way to keep one field out of
// its table): indexing it buys nothing, evicts entries that do repeat (content-type, the
// version stamps) from the 4 KiB dynamic table, and fills that table with entries of one
// name, which nghttp2's encoder then walked one by one (about 60 compares) for every field of
// that name it encoded. nghttp2 itself keeps :path, content-length and a few more out.
// Also the format in which the request path hands a request's fields to the HTTP/2 client
// (h2_head_writer, h2_head_entries).
#pragma once

#include "string_cursor.hpp"

#include "stagegate/core/text.hpp"

#include <nghttp2/nghttp2.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
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

// A request's fields for an HTTP/2 backend, as serialize_h2_request_head (http_util.hpp)
// writes them and h2_client::submit hands them to nghttp2: one string of entries, each its
// kind, its name's and value's sizes, its name (lowercase) and its value, which submit reads
// without a search; parsing an HTTP/1.1 head back into fields cost about 2k instructions a
// gRPC call. The entries are in the request's order; the kinds set apart what HTTP/2 sends
// as pseudo-headers, and the length, which a streamed request leaves out.
enum class h2_entry : std::uint8_t { field, method, path, authority, content_length };

struct h2_head_field {
    h2_entry kind;
    std::string_view name;  // lowercase; empty for the method and the path
    std::string_view value;
};

// Appends entries to `out`: the sink of forward_request_fields (http_util.cpp), writing through
// a string_cursor (the appends it replaced were half of what the entries cost). `out` has its
// final size once `finish` ran.
class h2_head_writer {
public:
    explicit h2_head_writer(std::string& out) : out_(out) {}

    void start(std::string_view method, std::string_view target) {
        put(h2_entry::method, {}, method);
        put(h2_entry::path, {}, target);
    }
    // A field as the client sent it (its name checked by the parser: a token), or one of the
    // gateway's own.
    void field(std::string_view name, std::string_view value) {
        put(h2_entry::field, name, value);
    }
    // The Host field (`name` as sent), which HTTP/2 sends as :authority.
    void authority(std::string_view /*name*/, std::string_view host) {
        put(h2_entry::authority, {}, host);
    }
    // A field whose value follows in pieces (add), ended by close.
    void open(std::string_view name) {
        open_at_ = out_.written_to();
        open_name_size_ = name.size();
        put(h2_entry::field, name, {});
    }
    void add(std::string_view piece) { out_.put(piece); }
    void close() {
        const auto value_size = static_cast<std::uint32_t>(out_.written_to() - open_at_ -
                                                           header_size - open_name_size_);
        std::memcpy(out_.at(open_at_) + 5, &value_size, 4);
    }
    void length(std::string_view digits) {
        put(h2_entry::content_length, "content-length", digits);
    }
    void finish() { out_.finish(); }

    static constexpr std::size_t header_size = 9;  // kind, name size, value size

private:
    void put(h2_entry kind, std::string_view name, std::string_view value) {
        const auto name_size = static_cast<std::uint32_t>(name.size());
        const auto value_size = static_cast<std::uint32_t>(value.size());
        const std::size_t n = header_size + name.size() + value.size();
        char* p = out_.room(n);
        p[0] = static_cast<char>(kind);
        std::memcpy(p + 1, &name_size, 4);
        std::memcpy(p + 5, &value_size, 4);
        p += header_size;
        if (!name.empty()) {
            std::memcpy(p, name.data(), name.size());
            // A name the parser took as a token, or one of the gateway's own: lowercasing it
            // cannot fail.
            static_cast<void>(lowercase_field_name(p, name.size()));
            p += name.size();
        }
        if (!value.empty()) {
            std::memcpy(p, value.data(), value.size());
        }
        out_.advance(n);
    }

    string_cursor out_;
    std::size_t open_at_ = 0;
    std::size_t open_name_size_ = 0;
};

// Calls `f(h2_head_field)` for each entry of `head` (as h2_head_writer wrote it), in order.
template <class F>
void h2_head_entries(std::string_view head, F&& f) {
    const char* p = head.data();
    const char* const end = p + head.size();
    while (static_cast<std::size_t>(end - p) >= h2_head_writer::header_size) {
        std::uint32_t name_size;
        std::uint32_t value_size;
        std::memcpy(&name_size, p + 1, 4);
        std::memcpy(&value_size, p + 5, 4);
        const char* name = p + h2_head_writer::header_size;
        f(h2_head_field{static_cast<h2_entry>(p[0]), std::string_view(name, name_size),
                        std::string_view(name + name_size, value_size)});
        p = name + name_size + value_size;
    }
}

}  // namespace stagegate::proxy
