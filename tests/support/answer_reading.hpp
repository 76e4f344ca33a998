// What the relay's readers make of a backend's answer, for comparing relay_reader's one pass
// with relay_response_parser (Beast's parser) in the unit tests and fuzz_answer_head: the
// client's head each writes, the outcome, and everything the exchange reads of the answer.
#pragma once

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/http_util.hpp"
#include "proxy/relay_reader.hpp"
#include "support/request_reading.hpp"

namespace stagegate::proxy::testing {

struct read_answer {
    boost::system::error_code ec;  // need_more: the bytes end before the answer does
    bool header_done = false;
    bool done = false;
    std::string head;  // the client's head as written
    unsigned status = 0;
    bool keep_alive = false;
    bool need_eof = false;
    std::optional<std::uint64_t> content_length;
    bool encoded = false;
    bool event_stream = false;
    std::string body;
    std::size_t used = 0;
    // Each call: the bytes it took and the body bytes it put into its lent buffer.
    std::vector<std::pair<std::size_t, std::string>> steps;

    bool operator==(const read_answer&) const = default;
};

// Feeds `bytes` to a reader as the exchange does: all that has arrived and is not yet taken,
// the head, then the body eagerly into lent buffers of `buffer_size` bytes.
template <class Reader>
read_answer read_answer_with(Reader& r, const std::string& head, std::string_view bytes,
                             delivery how, std::size_t buffer_size) {
    read_answer out;
    boost::system::error_code ec;
    std::size_t arrived = how.first == 0 ? bytes.size() : std::min(how.first, bytes.size());
    std::size_t used = 0;
    std::vector<char> lent(buffer_size);
    bool body_phase = false;
    // Out of bytes: more arrive, or the backend closes (true: the reading ends).
    const auto out_of_bytes = [&] {
        if (arrived < bytes.size()) {
            arrived = how.piece == 0 ? bytes.size() : std::min(arrived + how.piece, bytes.size());
            return false;
        }
        if (how.eof && !r.got_some()) {
            ec = http::error::end_of_stream;
        } else if (how.eof) {
            r.set_buffer(lent.data(), lent.size());
            r.put_eof(ec);
        } else {
            ec = http::error::need_more;
        }
        return true;
    };
    if (how.eager) {
        r.eager(true);
    }
    while (!r.is_done()) {
        if (used == arrived) {
            if (out_of_bytes()) {
                break;
            }
            continue;
        }
        if (!body_phase && r.is_header_done()) {
            body_phase = true;
            r.eager(true);
        }
        if (body_phase) {
            r.set_buffer(lent.data(), lent.size());
        }
        if (how.eager && !body_phase) {
            r.set_buffer(lent.data(), lent.size());  // an eager head call may reach the body
        }
        const auto n = r.put(boost::asio::buffer(bytes.data() + used, arrived - used), ec);
        used += n;
        const std::string_view put_in(lent.data(), lent.size() - r.buffer_left());
        if (body_phase || how.eager) {
            out.body.append(put_in);
        }
        out.steps.emplace_back(n, body_phase || how.eager ? std::string(put_in) : std::string());
        if (ec == http::error::need_buffer) {
            ec = {};
            continue;  // a fresh buffer
        }
        if (ec && ec != http::error::need_more) {
            break;
        }
        ec = {};
        if (n == 0 && !r.is_done() && out_of_bytes()) {
            break;
        }
    }
    out.ec = ec;
    out.used = used;
    out.header_done = r.is_header_done();
    out.done = r.is_done();
    if (!out.header_done) {
        return out;
    }
    out.head = head;
    out.status = r.status();
    out.keep_alive = r.keep_alive();
    out.need_eof = r.need_eof();
    const auto length = r.content_length();
    out.content_length = length ? std::optional<std::uint64_t>(*length) : std::nullopt;
    out.encoded = r.encoded();
    out.event_stream = r.event_stream();
    return out;
}

inline read_answer read_answer_by_parser(std::string_view bytes, unsigned client_version,
                                         bool head_request, std::size_t header_limit, delivery how,
                                         std::size_t buffer_size) {
    std::string head;
    relay_response_parser p(head, client_version, head_request);
    p.body_limit(boost::none);
    p.header_limit(static_cast<std::uint32_t>(header_limit));
    if (head_request) {
        p.skip(true);
    }
    return read_answer_with(p, head, bytes, how, buffer_size);
}

inline std::pair<read_answer, bool> read_answer_by_reader(std::string_view bytes,
                                                          unsigned client_version,
                                                          bool head_request,
                                                          std::size_t header_limit, delivery how,
                                                          std::size_t buffer_size) {
    std::string head;
    relay_reader r(head, client_version, head_request, header_limit);
    auto got = read_answer_with(r, head, bytes, how, buffer_size);
    return {got, r.read_in_one_pass()};
}

}  // namespace stagegate::proxy::testing
