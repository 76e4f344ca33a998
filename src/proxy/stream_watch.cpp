// Watching an OpenAI stream's events. See stream_watch.hpp.
#include "stream_watch.hpp"

#include <algorithm>
#include <cstring>

namespace stagegate::proxy {

namespace {

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

// An SSE field's value: "data: x" and "data:x" both give "x" (one optional space).
bool field_value(std::string_view line, std::string_view field, std::string_view& value) {
    if (!starts_with(line, field) || line.size() == field.size() || line[field.size()] != ':') {
        return false;
    }
    value = line.substr(field.size() + 1);
    if (!value.empty() && value.front() == ' ') {
        value.remove_prefix(1);
    }
    return true;
}

}  // namespace

openai_stream openai_stream_of(std::string_view target) {
    const auto path = target.substr(0, target.find('?'));
    if (path == "/v1/chat/completions" || path == "/v1/completions") {
        return openai_stream::chat;
    }
    if (path == "/v1/responses") {
        return openai_stream::responses;
    }
    return openai_stream::none;
}

void stream_watch::feed(const char* data, std::size_t n) {
    // A line at a time: its bytes to the scan in one run, its first bytes kept for end_line.
    const char* p = data;
    const char* const end = data + n;
    while (p < end) {
        const auto* newline =
            static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
        const char* stop = newline != nullptr ? newline : end;
        const auto size = static_cast<std::size_t>(stop - p);
        scan_.feed(p, size);
        if (line_size_ < line_.size()) {
            std::memcpy(line_.data() + line_size_, p, std::min(size, line_.size() - line_size_));
        }
        line_size_ += size;
        if (newline == nullptr) {
            return;
        }
        end_line();
        p = newline + 1;
    }
}

void stream_watch::finish() {
    if (line_size_ > 0) {
        end_line();
    }
}

void stream_watch::end_line() {
    std::string_view line(line_.data(), std::min(line_size_, line_.size()));
    const bool whole = line_size_ <= line_.size();
    line_size_ = 0;
    const bool content = scan_.content_in_line();
    scan_.end_line();
    if (!line.empty() && line.back() == '\r' && whole) {
        line.remove_suffix(1);
    }
    std::string_view value;
    if (field_value(line, "event", value)) {
        if (value == "error" || (whole && value == "response.failed")) {
            error_ = true;
        } else if (kind_ == openai_stream::responses && whole && value == "response.completed") {
            finished_ = true;
        }
        return;
    }
    if (!field_value(line, "data", value)) {
        return;  // comments (":"), ids, retry hints, blank lines between events
    }
    if (starts_with(value, "{\"error\"") || starts_with(value, "{\"type\":\"error\"") ||
        starts_with(value, "{\"type\":\"response.failed\"")) {
        error_ = true;
    } else if (kind_ == openai_stream::chat && whole && value == "[DONE]") {
        finished_ = true;
    } else if (kind_ == openai_stream::responses &&
               starts_with(value, "{\"type\":\"response.completed\"")) {
        finished_ = true;
    } else if (!value.empty()) {
        ++data_events_;
        content_events_ += content ? 1 : 0;
    }
}

}  // namespace stagegate::proxy
