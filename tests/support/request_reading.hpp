// What the request path's readers make of some bytes, for comparing request_reader's one pass
// with Beast's parser (request_parser) in the unit tests and fuzz_request_head: the outcome and
// everything the gateway reads of a request.
#pragma once

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "proxy/client_request.hpp"

namespace stagegate::proxy::testing {

struct read_request {
    boost::system::error_code ec;  // need_more: the bytes end before the request does
    bool done = false;
    http::verb method = http::verb::unknown;
    std::string method_string;
    std::string target;
    unsigned version = 0;
    std::vector<std::tuple<http::field, std::string, std::string>> fields;
    std::optional<std::uint64_t> content_length;
    bool keep_alive = false;
    bool chunked = false;
    std::string body;
    std::size_t used = 0;           // bytes taken
    std::vector<std::size_t> puts;  // bytes taken by each call

    bool operator==(const read_request&) const = default;
};

template <class Reader>
read_request summary_of(const Reader& r, const boost::system::error_code& ec, std::size_t used) {
    read_request out;
    out.ec = ec;
    out.used = used;
    out.done = r.is_done();
    if (ec || !r.is_header_done()) {
        return out;
    }
    const client_request& req = r.get();
    out.method = req.method();
    out.method_string = req.method_string();
    out.target = req.target();
    out.version = req.version();
    for (const auto f : req) {
        out.fields.emplace_back(f.name(), f.name_string(), f.value());
    }
    const auto length = r.content_length();
    out.content_length = length ? std::optional<std::uint64_t>(*length) : std::nullopt;
    out.keep_alive = r.keep_alive();
    out.chunked = r.chunked();
    out.body.assign(req.body().data(), req.body().size());
    return out;
}

// How the bytes reach a reader, as the session's buffer hands them over: `first` of them at
// once (0: all), then `piece` more each time the reader wants more (0: all the rest). With
// `eof`, the peer closes after the last byte (put_eof tells what the request then lacks);
// without, a request still short of bytes ends the reading with need_more. With `eager`, the
// reader is eager from the start (the call that completes the head goes on into the body).
struct delivery {
    std::size_t first = 0;
    std::size_t piece = 0;
    bool eof = false;
    bool eager = false;  // from the first byte, not from the body on
};

// Feeds `bytes` to a reader as the session does: all that has arrived and is not yet taken,
// the head, then the body eagerly, stopping at an error or when the request is done.
template <class Reader>
read_request read_with(Reader& r, std::string_view bytes, delivery how = {}) {
    boost::system::error_code ec;
    std::size_t arrived = how.first == 0 ? bytes.size() : std::min(how.first, bytes.size());
    std::size_t used = 0;
    std::vector<std::size_t> puts;
    if (how.eager) {
        r.eager(true);
    }
    while (!r.is_done()) {
        const auto n = r.put(boost::asio::buffer(bytes.data() + used, arrived - used), ec);
        used += n;
        puts.push_back(n);
        if (ec && ec != http::error::need_more) {
            break;
        }
        ec = {};
        if (r.is_header_done()) {
            r.eager(true);
        }
        if (r.is_done() || (n > 0 && used < arrived)) {
            continue;  // done, or more of what arrived to take
        }
        if (arrived == bytes.size()) {
            if (how.eof && !r.got_some()) {
                ec = http::error::end_of_stream;  // as head_read_failure: nothing came
            } else if (how.eof) {
                r.put_eof(ec);
            } else {
                ec = http::error::need_more;
            }
            break;
        }
        arrived = how.piece == 0 ? bytes.size() : std::min(arrived + how.piece, bytes.size());
    }
    auto out = summary_of(r, ec, used);
    out.puts = std::move(puts);
    return out;
}

// One to three edits of `bytes`: a byte replaced, inserted or removed, each new byte one of
// those that matter to the grammar (line ends, blanks, separators, controls, obs-text, digits,
// letters). What the readers' agreement tests make of the common heads.
inline void mutate(std::mt19937_64& random, std::string& bytes) {
    static constexpr char alphabet_bytes[] =
        "\r\n \t:,;\"()/\\\x00\x01\x7f\x80\xff"
        "0123456789aAzZ-_.%+HTP";
    constexpr std::string_view alphabet(alphabet_bytes, sizeof alphabet_bytes - 1);
    const auto edits = 1 + random() % 3;
    for (std::uint64_t e = 0; e < edits && !bytes.empty(); ++e) {
        const std::size_t at = random() % bytes.size();
        const char c = alphabet[random() % alphabet.size()];
        switch (random() % 3) {
            case 0:
                bytes[at] = c;
                break;
            case 1:
                bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), c);
                break;
            default:
                bytes.erase(at, 1);
                break;
        }
    }
}

inline read_request read_by_parser(std::string_view bytes, std::size_t header_limit,
                                   std::uint64_t body_limit, delivery how = {}) {
    request_parser p;
    p.header_limit(static_cast<std::uint32_t>(header_limit));
    p.body_limit(body_limit);
    return read_with(p, bytes, how);
}

}  // namespace stagegate::proxy::testing
