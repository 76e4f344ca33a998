// Private to proxy: the grammar the one-pass head readers take (request_reader for a client's
// request, relay_reader for a backend's answer): a strict subset of RFC 9112, each piece as
// Beast's parser reads it, so that a head they take reads the same either way. Anything
// outside it is declined, and the reader leaves the whole head to Beast's parser.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace stagegate::proxy::head_scan {

// What each byte may be, as bits: a tchar (RFC 9110 5.6.2: what a method and a field name
// are made of, Beast's table), visible ASCII (a target's bytes, a value's or a reason's other
// than its blanks), a blank (SP, HTAB). One look-up a byte in the scanning loops.
enum : unsigned char { token_bit = 1, visible_bit = 2, blank_bit = 4 };
inline constexpr std::array<unsigned char, 256> byte_kinds = [] {
    std::array<unsigned char, 256> table{};
    for (unsigned c = 0x21; c < 0x7f; ++c) {
        table[c] = visible_bit;
    }
    for (unsigned c = '0'; c <= '9'; ++c) {
        table[c] |= token_bit;
    }
    for (unsigned c = 'a'; c <= 'z'; ++c) {
        table[c] |= token_bit;
        table[c - 'a' + 'A'] |= token_bit;
    }
    for (unsigned char c : std::string_view("!#$%&'*+-.^_`|~")) {
        table[c] |= token_bit;
    }
    table[' '] = blank_bit;
    table['\t'] = blank_bit;
    return table;
}();

inline bool is(char c, unsigned kinds) {
    return (byte_kinds[static_cast<unsigned char>(c)] & kinds) != 0;
}

inline bool token_char(char c) {
    return is(c, token_bit);
}

inline bool visible(char c) {
    return is(c, visible_bit);
}

inline bool blank(char c) {
    return is(c, blank_bit);
}

// Past the first CRLF CRLF in [first, last) (where Beast's parser also ends a head), or null.
// The scanning loops below then need no bound: each stops at a CR at the latest, and the
// head's last four bytes hold two.
inline const char* head_end(const char* first, const char* last) {
    // From CR to CR with memchr (a head has one every few dozen bytes): glibc's memmem took
    // more than the whole scan.
    for (const char* p = first; last - p >= 4;) {
        const auto* cr =
            static_cast<const char*>(std::memchr(p, '\r', static_cast<std::size_t>(last - p - 3)));
        if (cr == nullptr) {
            return nullptr;
        }
        if (cr[1] == '\n' && cr[2] == '\r' && cr[3] == '\n') {
            return cr + 4;
        }
        p = cr + 1;
    }
    return nullptr;
}

// A Content-Length taken: 1 to 18 digits (no sign, list or blank).
inline std::optional<std::uint64_t> plain_length(std::string_view digits) {
    if (digits.empty() || digits.size() > 18) {
        return std::nullopt;
    }
    std::uint64_t n = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return n;
}

enum class line { field, end_of_head, decline };

// Reads the line at `at`, inside a head whose end head_end found: a field line (a token name,
// a colon, blanks, a value of visible ASCII and blanks, CRLF), whose name and value (without
// its blanks either side) it gives, or the empty line that ends the head; `at` moves past
// it. Anything else is declined. (A fold, a line that begins with a blank, fails the name.)
// Inlined into each reader's loop: as a call it was a tenth of a request's reading.
[[gnu::always_inline]] inline line next_field(const char*& at, std::string_view& name,
                                              std::string_view& value) {
    const char* p = at;  // a local the loops keep in a register
    if (p[0] == '\r') {
        if (p[1] != '\n') {
            return line::decline;
        }
        at = p + 2;
        return line::end_of_head;
    }
    const char* const name_at = p;
    while (is(*p, token_bit)) {
        ++p;
    }
    if (p == name_at || *p != ':') {
        return line::decline;
    }
    const char* const name_end = p;
    ++p;
    while (is(*p, blank_bit)) {
        ++p;
    }
    const char* const value_at = p;
    while (is(*p, visible_bit | blank_bit)) {
        ++p;
    }
    if (p[0] != '\r' || p[1] != '\n') {
        return line::decline;
    }
    const char* value_end = p;
    while (value_end != value_at && is(value_end[-1], blank_bit)) {
        --value_end;
    }
    at = p + 2;
    name = std::string_view(name_at, static_cast<std::size_t>(name_end - name_at));
    value = std::string_view(value_at, static_cast<std::size_t>(value_end - value_at));
    return line::field;
}

}  // namespace stagegate::proxy::head_scan
