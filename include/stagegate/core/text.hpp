// core/text: percent-encoding (RFC 3986, by Boost.URL) shared by the admin API, its CLI and the
// state files; the small text helpers several modules need (blank trimming in header lists,
// ASCII case-insensitive equality of field names and tokens, FNV-1a).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stagegate {

// Letters and digits stay, as does every character in `keep`; all else becomes %XX.
std::string percent_encode(std::string_view text, std::string_view keep = "-_.~");

// %XX -> byte; with `plus_is_space` (query strings) '+' -> ' '. nullopt when a % is not
// followed by two hex digits.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space);

// `s` without leading and trailing spaces and tabs (HTTP's optional whitespace).
inline std::string_view trim_blanks(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

// Whether two strings are equal with ASCII letters compared case aside (other bytes exactly);
// the sizes first, so names of other lengths cost one compare.
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

// FNV-1a, 64 bits, from `basis` (the standard offset basis by default): a fast hash for keys
// and validators, not a defence against anyone.
inline std::uint64_t fnv1a(std::string_view s, std::uint64_t basis = 0xcbf29ce484222325ULL) {
    for (unsigned char c : s) {
        basis = (basis ^ c) * 0x100000001b3ULL;
    }
    return basis;
}

}  // namespace stagegate
