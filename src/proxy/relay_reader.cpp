#include "relay_reader.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#include "head_scan.hpp"
#include "stagegate/core/text.hpp"

namespace stagegate::proxy {

relay_reader::relay_reader(std::string& head, unsigned client_version, bool head_request,
                           std::size_t header_limit)
    : parser_(head, client_version, head_request),
      head_request_(head_request),
      header_limit_(header_limit) {
    parser_.body_limit(boost::none);
    parser_.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(header_limit, std::numeric_limits<std::uint32_t>::max())));
    if (head_request) {
        parser_.skip(true);  // the answer to HEAD has no body, whatever its head says
    }
}

std::size_t relay_reader::put(boost::asio::const_buffer bytes, boost::system::error_code& ec) {
    if (mode_ == mode::undecided) {
        if (bytes.size() == 0) {
            ec = http::error::need_more;
            return 0;
        }
        if (read_head(std::string_view(static_cast<const char*>(bytes.data()), bytes.size()))) {
            mode_ = mode::one_pass;
            ec = {};
            // As the parser: eager, the call that completes the head goes on into the body.
            if (parser_.eager() && body_left_ > 0 && bytes.size() > head_size_) {
                return head_size_ + take_body(bytes + head_size_, ec);
            }
            return head_size_;
        }
        mode_ = mode::parser;
    }
    if (mode_ == mode::parser) {
        return parser_.put(bytes, ec);
    }
    if (body_left_ == 0) {
        ec = http::error::stale_parser;  // as the parser, given bytes after its message
        return 0;
    }
    return take_body(bytes, ec);
}

std::size_t relay_reader::take_body(boost::asio::const_buffer bytes,
                                    boost::system::error_code& ec) {
    ec = {};
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(bytes.size(), body_left_));
    // The parser's own copy into the lent buffer (need_buffer once it is full, or if none).
    const auto used = parser_.on_body_impl(
        boost::beast::string_view(static_cast<const char*>(bytes.data()), n), ec);
    body_left_ -= used;
    return used;
}

void relay_reader::put_eof(boost::system::error_code& ec) {
    if (mode_ == mode::one_pass) {
        ec = body_left_ > 0 ? boost::system::error_code(http::error::partial_message)
                            : boost::system::error_code{};
        return;
    }
    parser_.put_eof(ec);
}

bool relay_reader::got_some() const {
    return mode_ == mode::one_pass || parser_.got_some();
}

bool relay_reader::is_header_done() const {
    return mode_ == mode::one_pass || parser_.is_header_done();
}

bool relay_reader::is_done() const {
    return mode_ == mode::one_pass ? body_left_ == 0 : parser_.is_done();
}

bool relay_reader::keep_alive() const {
    return mode_ == mode::one_pass ? keep_alive_ : parser_.keep_alive();
}

bool relay_reader::need_eof() const {
    return mode_ == mode::one_pass ? false : parser_.need_eof();
}

std::optional<std::uint64_t> relay_reader::content_length() const {
    if (mode_ == mode::one_pass) {
        return length_;
    }
    const auto length = parser_.content_length();
    return length ? std::optional<std::uint64_t>(*length) : std::nullopt;
}

// Reads and checks the whole head before it calls the parser's callbacks, so that a head it
// declines has written nothing: the parser then reads it from its start.
bool relay_reader::read_head(std::string_view bytes) {
    if (head_request_) {
        return false;
    }
    const char* const first = bytes.data();
    // The parser judges a head within its first header_limit bytes only.
    const char* const end =
        head_scan::head_end(first, first + std::min(bytes.size(), header_limit_));
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (end == nullptr || end - first < 17 || std::memcmp(first, "HTTP/1.", 7) != 0 ||
        (first[7] != '0' && first[7] != '1') || first[8] != ' ' || !digit(first[9]) ||
        !digit(first[10]) || !digit(first[11]) || first[12] != ' ') {
        return false;
    }
    const int version = first[7] == '1' ? 11 : 10;
    const auto status =
        static_cast<unsigned>((first[9] - '0') * 100 + (first[10] - '0') * 10 + (first[11] - '0'));
    // 1xx, 204 and 304 have no body whatever their head says: the parser's to read.
    if (status < 200 || status > 599 || status == 204 || status == 304) {
        return false;
    }
    const char* p = first + 13;
    const char* const reason_at = p;
    while (head_scan::is(*p, head_scan::visible_bit | head_scan::blank_bit)) {
        ++p;
    }
    if (p[0] != '\r' || p[1] != '\n') {
        return false;
    }
    const std::string_view reason(reason_at, static_cast<std::size_t>(p - reason_at));
    p += 2;

    struct field_line {
        http::field name;
        std::string_view name_string;
        std::string_view value;
    };
    std::array<field_line, 32> fields;  // more is rare: the parser's
    std::size_t count = 0;
    std::optional<std::uint64_t> length;
    bool close = false;
    bool keep = false;
    for (;;) {
        field_line f;
        const auto got = head_scan::next_field(p, f.name_string, f.value);
        if (got == head_scan::line::end_of_head) {
            break;
        }
        if (got == head_scan::line::decline || count == fields.size()) {
            return false;
        }
        f.name = http::string_to_field(f.name_string);
        switch (f.name) {
            case http::field::content_length:
                if (length) {
                    return false;
                }
                length = head_scan::plain_length(f.value);
                if (!length) {
                    return false;
                }
                break;
            case http::field::connection:
            case http::field::proxy_connection:
                if (ascii_iequal(f.value, "close")) {
                    close = true;
                } else if (ascii_iequal(f.value, "keep-alive")) {
                    keep = true;
                } else {
                    return false;
                }
                break;
            case http::field::transfer_encoding:
            case http::field::upgrade:
                return false;
            default:
                break;
        }
        fields[count++] = f;
    }
    if (!length) {
        return false;  // a body that ends with the connection: the parser's
    }
    // Taken: the parser's callbacks write the client's head from it, as they would have.
    boost::system::error_code ec;
    parser_.on_response_impl(static_cast<int>(status), reason, version, ec);
    for (std::size_t i = 0; i < count; ++i) {
        parser_.on_field_impl(fields[i].name, fields[i].name_string, fields[i].value, ec);
    }
    parser_.on_header_impl(ec);
    head_size_ = static_cast<std::size_t>(p - first);
    length_ = *length;
    body_left_ = *length;
    // As basic_parser::keep_alive: HTTP/1.1 unless "close", HTTP/1.0 only with "keep-alive".
    keep_alive_ = version == 11 ? !close : keep;
    return true;
}

}  // namespace stagegate::proxy
