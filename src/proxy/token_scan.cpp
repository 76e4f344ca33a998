// Reading an OpenAI answer's token counts. See token_scan.hpp.
#include "token_scan.hpp"

#include "stream_watch.hpp"

#include <string_view>

namespace stagegate::proxy {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Beyond any real count (and far from overflowing): digits past it are ignored.
constexpr std::uint64_t number_cap = std::uint64_t{1} << 50;

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
        if (string_size_ < string_.size()) {
            string_[string_size_] = c;
        }
        string_size_ += string_size_ <= string_.size() ? 1 : 0;
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
