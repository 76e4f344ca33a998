// Reading an OpenAI answer's token counts. See token_scan.hpp.
#include "token_scan.hpp"

#include "stream_watch.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string_view>

namespace stagegate::proxy {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Beyond any real count (and far from overflowing): digits past it are ignored.
constexpr std::uint64_t number_cap = std::uint64_t{1} << 50;

// The first quote or backslash in [p, end), or end: where a string's plain bytes stop. Eight
// bytes at a time: (v - 1) & ~v has a byte's high bit set where v's byte is 0 (and maybe in
// bytes above a zero, never below one), so the lowest bit set over both tests is the first
// byte that is either.
const char* plain_string_end(const char* p, const char* end) {
    static_assert(std::endian::native == std::endian::little, "the lowest byte comes first");
    constexpr std::uint64_t ones = 0x0101010101010101ull;
    constexpr std::uint64_t highs = 0x8080808080808080ull;
    for (; end - p >= 8; p += 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        const std::uint64_t quote = w ^ (ones * '"');
        const std::uint64_t backslash = w ^ (ones * '\\');
        const std::uint64_t found =
            (((quote - ones) & ~quote) | ((backslash - ones) & ~backslash)) & highs;
        if (found != 0) {
            return p + (std::countr_zero(found) >> 3);
        }
    }
    while (p < end && *p != '"' && *p != '\\') {
        ++p;
    }
    return p;
}

}  // namespace

token_scan::key token_scan::key_of() const {
    if (string_size_ > string_.size()) {
        return key::other;
    }
    const std::string_view k(string_.data(), string_size_);
    if (k == "prompt_tokens" || k == "input_tokens") {
        return key::input;
    }
    if (k == "completion_tokens" || k == "output_tokens") {
        return key::output;
    }
    if (kind_ == openai_stream::responses) {
        return k == "delta" ? key::content : key::other;
    }
    return k == "content" || k == "reasoning_content" || k == "reasoning" || k == "text" ||
                   k == "arguments"
               ? key::content
               : key::other;
}

void token_scan::finish_number() {
    if (pending_ == key::input) {
        input_tokens_ = number_;
        has_input_ = true;
    } else if (pending_ == key::output) {
        output_tokens_ = number_;
        has_output_ = true;
    }
    pending_ = key::other;
}

void token_scan::keep_string_bytes(const char* from, std::size_t n) {
    if (string_size_ < string_.size()) {
        std::memcpy(string_.data() + string_size_, from,
                    std::min(n, string_.size() - string_size_));
    }
    // As byte by byte: the size stops one past the storage, which marks "too long for a key".
    string_size_ = std::min(string_size_ + n, string_.size() + 1);
}

void token_scan::feed(const char* data, std::size_t n) {
    const char* p = data;
    const char* const end = data + n;
    while (p < end) {
        if (state_ == state::structure) {
            // Between strings only a quote changes anything (the gaps are a byte or two in
            // a compact chunk: a plain loop, not memchr's call).
            while (*p != '"') {
                if (++p == end) {
                    return;
                }
            }
            ++p;
            string_size_ = 0;
            escaped_ = false;
            state_ = state::in_string;
        } else if (state_ == state::in_string && !escaped_) {
            // A string's bytes up to its closing quote or its next escape.
            const char* stop = plain_string_end(p, end);
            keep_string_bytes(p, static_cast<std::size_t>(stop - p));
            p = stop;
            if (p == end) {
                return;
            }
            if (*p == '"') {
                ++p;
                state_ = state::after_string;
            } else {
                feed(*p++);  // the backslash: the byte after it is taken as it is
            }
        } else {
            feed(*p++);
        }
    }
}

void token_scan::feed(char c) {
    switch (state_) {
    case state::structure:
        break;
    case state::in_string:
        if (escaped_) {
            escaped_ = false;
        } else if (c == '\\') {
            escaped_ = true;
        } else if (c == '"') {
            state_ = state::after_string;
            return;
        }
        keep_string_bytes(&c, 1);
        return;
    case state::after_string:
        if (is_space(c)) {
            return;
        }
        if (c == ':') {
            pending_ = key_of();
            state_ = pending_ == key::other ? state::structure : state::value;
            return;
        }
        state_ = state::structure;
        break;
    case state::value:
        if (is_space(c)) {
            return;
        }
        state_ = state::structure;
        if (is_digit(c) && (pending_ == key::input || pending_ == key::output)) {
            number_ = static_cast<std::uint64_t>(c - '0');
            state_ = state::number;
            return;
        }
        if (c == '"' && pending_ == key::content) {
            string_size_ = 0;
            state_ = state::first_char;
            return;
        }
        pending_ = key::other;
        break;
    case state::number:
        if (is_digit(c)) {
            if (number_ < number_cap) {
                number_ = number_ * 10 + static_cast<std::uint64_t>(c - '0');
            }
            return;
        }
        finish_number();
        state_ = state::structure;
        break;
    case state::first_char:
        pending_ = key::other;
        if (c == '"') {
            state_ = state::after_string;  // "": no content
            return;
        }
        content_in_line_ = true;
        state_ = state::in_string;
        feed(c);
        return;
    }
    // In the structure (or back in it): a quote opens a string.
    if (c == '"') {
        string_size_ = 0;
        escaped_ = false;
        state_ = state::in_string;
    }
}

void token_scan::end_line() {
    if (state_ == state::number) {
        finish_number();
    }
    state_ = state::structure;
    pending_ = key::other;
    escaped_ = false;
    string_size_ = 0;
    content_in_line_ = false;
}

}  // namespace stagegate::proxy
