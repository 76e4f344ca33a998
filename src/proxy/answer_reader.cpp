#include "answer_reader.hpp"

#include <algorithm>
#include <cstring>

#include "h2_fields.hpp"
#include "head_scan.hpp"

namespace stagegate::proxy {
namespace {

using namespace std::string_view_literals;

// Whether an HTTP/1.1 field is connection-specific (RFC 9113 8.2.2: an HTTP/2 message must
// not carry it). `lower_name` is lowercase.
bool connection_specific(std::string_view lower_name) {
    return lower_name == "connection"sv || lower_name == "keep-alive"sv ||
           lower_name == "proxy-connection"sv || lower_name == "transfer-encoding"sv ||
           lower_name == "upgrade"sv;
}

// Decimal digits only, without overflow.
bool parse_decimal(std::string_view text, std::uint64_t& out) {
    if (text.empty() || text.size() > 19) {
        return false;
    }
    std::uint64_t n = 0;
    for (const char c : text) {
        if (c < '0' || c > '9') {
            return false;
        }
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    out = n;
    return true;
}

// A Content-Length value: one length, or a comma-separated list of the same length.
bool parse_length_list(std::string_view value, std::uint64_t& out) {
    bool first = true;
    while (true) {
        const auto comma = value.find(',');
        auto item = value.substr(0, comma);
        while (!item.empty() && head_scan::blank(item.front())) {
            item.remove_prefix(1);
        }
        while (!item.empty() && head_scan::blank(item.back())) {
            item.remove_suffix(1);
        }
        std::uint64_t n = 0;
        if (!parse_decimal(item, n) || (!first && n != out)) {
            return false;
        }
        out = n;
        first = false;
        if (comma == std::string_view::npos) {
            return true;
        }
        value.remove_prefix(comma + 1);
    }
}

}  // namespace

answer_reader::answer_reader() {
    fields_.bytes.reserve(448);  // with the string's terminating NUL, one 512-byte block
    fields_.head.reserve(8);
}

answer_reader::line_status answer_reader::next_line(const char*& p, const char* end,
                                                    std::string_view& line) {
    const auto* newline =
        static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    const char* const stop = newline ? newline + 1 : end;
    line_bytes_ += static_cast<std::size_t>(stop - p);
    if (line_bytes_ > max_head_bytes) {
        return line_status::bad;
    }
    if (!newline) {
        line_.append(p, static_cast<std::size_t>(end - p));  // the rest comes in a later write
        p = end;
        return line_status::more;
    }
    if (line_.empty()) {
        line = std::string_view(p, static_cast<std::size_t>(stop - p));  // whole in this write
    } else {
        line_.append(p, static_cast<std::size_t>(stop - p));
        line = line_;
    }
    p = stop;
    if (line.size() < 2 || line[line.size() - 2] != '\r') {
        return line_status::bad;  // a bare LF: not this process's
    }
    line.remove_suffix(2);
    return line_status::ok;
}

bool answer_reader::read(const char* data, std::size_t size, cached_string& body) {
    const char* p = data;
    const char* const end = data + size;
    while (p < end) {
        switch (state_) {
            case state::status_line:
            case state::fields:
            case state::chunk_size:
            case state::trailers: {
                std::string_view line;
                const auto got = next_line(p, end, line);
                if (got == line_status::bad) {
                    return false;
                }
                if (got == line_status::more) {
                    break;
                }
                bool ok = true;
                if (state_ == state::status_line) {
                    ok = parse_status_line(line);
                    state_ = state::fields;
                } else if (state_ == state::fields) {
                    ok = line.empty() ? begin_body() : parse_field_line(line, false);
                } else if (state_ == state::chunk_size) {
                    ok = parse_chunk_size(line);
                } else if (line.empty()) {
                    state_ = state::done;
                } else {
                    ok = parse_field_line(line, true);
                }
                line_.clear();
                if (!ok) {
                    return false;
                }
                break;
            }
            case state::sized_body:
            case state::chunk_data: {
                const auto n = static_cast<std::size_t>(
                    std::min<std::uint64_t>(left_, static_cast<std::size_t>(end - p)));
                body.append(p, n);
                p += n;
                left_ -= n;
                if (left_ == 0) {
                    state_ = state_ == state::sized_body ? state::done : state::chunk_end;
                }
                break;
            }
            case state::chunk_end:
                // The CRLF after a chunk's bytes, perhaps split between two writes.
                if (*p != (line_.empty() ? '\r' : '\n')) {
                    return false;
                }
                ++p;
                if (line_.empty()) {
                    line_.push_back('\r');
                } else {
                    line_.clear();
                    state_ = state::chunk_size;
                }
                break;
            case state::until_close:
            case state::given_body:
                body.append(p, static_cast<std::size_t>(end - p));
                p = end;
                break;
            case state::done:
                return true;  // what follows the answer is not part of it
        }
    }
    return true;
}

bool answer_reader::parse_status_line(std::string_view line) {
    // "HTTP/1.1 200 OK" (the reason may be empty).
    if (line.size() < 12 || !line.starts_with("HTTP/1."sv) || line[8] != ' ' ||
        (line.size() > 12 && line[12] != ' ')) {
        return false;
    }
    unsigned code = 0;
    for (std::size_t i = 9; i < 12; ++i) {
        if (line[i] < '0' || line[i] > '9') {
            return false;
        }
        code = code * 10 + static_cast<unsigned>(line[i] - '0');
    }
    status_ = code;
    return code >= 100;
}

bool answer_reader::parse_field_line(std::string_view line, bool trailer) {
    const auto colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) {
        return false;
    }
    const auto name = line.substr(0, colon);
    auto value = line.substr(colon + 1);
    while (!value.empty() && head_scan::blank(value.front())) {
        value.remove_prefix(1);
    }
    while (!value.empty() && head_scan::blank(value.back())) {
        value.remove_suffix(1);
    }
    if (!trailer) {
        // The framing this reader follows (the field itself goes, or stays, below).
        if (ascii_iequal(name, "transfer-encoding"sv)) {
            if (!ascii_iequal(value, "chunked"sv)) {
                return false;
            }
            chunked_ = true;
        } else if (ascii_iequal(name, "content-length"sv)) {
            // A HEAD request's answer carries the backend's Content-Length as it came, which
            // Beast accepted repeated or as a list when every value is the same ("5, 5").
            std::uint64_t length = 0;
            if (!parse_length_list(value, length) || (has_length_ && length != left_)) {
                return false;
            }
            left_ = length;
            has_length_ = true;
        }
    }
    auto& bytes = fields_.bytes;
    const auto name_at = bytes.size();
    bytes.append(name);
    if (!lowercase_field_name(bytes.data() + name_at, name.size())) {
        return false;
    }
    if (connection_specific(std::string_view(bytes).substr(name_at))) {
        bytes.resize(name_at);
        return true;
    }
    bytes.append(value);
    fields_.add_written(trailer ? fields_.trailers : fields_.head, name_at, name.size(),
                        value.size());
    return true;
}

bool answer_reader::begin_body() {
    line_bytes_ = 0;  // the head's bound is spent on the head
    // No body: a HEAD request's answer, 1xx, 204 and 304 (RFC 9112 6.3).
    if (head_request_ || status_ < 200 || status_ == 204 || status_ == 304) {
        state_ = state::done;
    } else if (chunked_) {
        if (has_length_) {
            return false;  // both framings: not something this process writes
        }
        state_ = state::chunk_size;
    } else if (has_length_) {
        state_ = left_ == 0 ? state::done : state::sized_body;
    } else {
        state_ = state::until_close;
    }
    return true;
}

bool answer_reader::parse_chunk_size(std::string_view line) {
    // Hex digits, then perhaps extensions (";name=value"), which say nothing to HTTP/2.
    std::uint64_t size = 0;
    std::size_t digits = 0;
    for (; digits < line.size(); ++digits) {
        const char c = line[digits];
        unsigned v;
        if (c >= '0' && c <= '9') {
            v = static_cast<unsigned>(c - '0');
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v = static_cast<unsigned>((c | 0x20) - 'a' + 10);
        } else {
            break;
        }
        if (digits >= 15) {
            return false;  // past any body this process would relay
        }
        size = size * 16 + v;
    }
    if (digits == 0 || (digits < line.size() && line[digits] != ';' && !head_scan::blank(line[digits]))) {
        return false;
    }
    left_ = size;
    state_ = size == 0 ? state::trailers : state::chunk_data;
    line_bytes_ = 0;  // each size line, and then the trailers, have the head's bound afresh
    return true;
}

}  // namespace stagegate::proxy
