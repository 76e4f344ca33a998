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
    : one_pass_reader(header_limit, head, client_version, head_request),
      head_request_(head_request) {
    parser_.body_limit(boost::none);
    if (head_request) {
        parser_.skip(true);  // the answer to HEAD has no body, whatever its head says
    }
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
    head_framing framing;
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
        if (!framing.take(f.name, f.value, std::numeric_limits<std::uint64_t>::max())) {
            return false;
        }
        fields[count++] = f;
    }
    if (!framing.length) {
        return false;  // a body that ends with the connection: the parser's
    }
    // Taken: the parser's callbacks write the client's head from it, as they would have.
    boost::system::error_code ec;
    parser_.on_response_impl(static_cast<int>(status), reason, version, ec);
    for (std::size_t i = 0; i < count; ++i) {
        parser_.on_field_impl(fields[i].name, fields[i].name_string, fields[i].value, ec);
    }
    parser_.on_header_impl(ec);
    took_head(static_cast<std::size_t>(p - first), framing, version == 11);
    return true;
}

}  // namespace stagegate::proxy
