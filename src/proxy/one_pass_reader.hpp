// Private to proxy: what both one-pass head readers share (request_reader for a client's
// request, relay_reader for a backend's answer): the choice, made on the first bytes, between
// their own pass over a common head and Beast's parser for everything, and, once they took a
// head, the body of known length and the parser's answers (done, keep-alive, length, what a
// close leaves) as Beast's parser gives them. Each reader adds how it reads a head
// (read_head, which calls took_head) and where body bytes go (take_body).
#pragma once

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>

#include "head_scan.hpp"
#include "stagegate/core/text.hpp"

namespace stagegate::proxy {

// What the fields of a head read in one pass say of its framing, as Beast's parser reads
// them (its do_field): the length, and the Connection tokens keep-alive depends on.
struct head_framing {
    std::optional<std::uint64_t> length;
    bool close = false;
    bool keep = false;

    // Takes one field; false for one the one pass leaves to the parser: a second or not plain
    // Content-Length, or one past `body_limit`; Connection or Proxy-Connection other than one
    // "close" or "keep-alive" (a list, or names of fields to drop); Transfer-Encoding;
    // Upgrade.
    bool take(boost::beast::http::field name, std::string_view value, std::uint64_t body_limit) {
        using boost::beast::http::field;
        switch (name) {
            case field::content_length:
                if (length) {
                    return false;  // repeated: the parser's (and check_head's) to judge
                }
                length = head_scan::plain_length(value);
                return length && *length <= body_limit;
            case field::connection:
            case field::proxy_connection:
                if (ascii_iequal(value, "close")) {
                    close = true;
                    return true;
                }
                if (ascii_iequal(value, "keep-alive")) {
                    keep = true;
                    return true;
                }
                return false;
            case field::transfer_encoding:
            case field::upgrade:
                return false;
            default:
                return true;
        }
    }
};

template <class Reader, class Parser>
class one_pass_reader {
  public:
    // As basic_parser::put: takes what it can of `bytes` and says how much it used. Until the
    // head is whole: nothing, with need_more. When eager, the call that completes a head goes
    // on into the body, as Beast's parser does.
    std::size_t put(boost::asio::const_buffer bytes, boost::system::error_code& ec) {
        namespace http = boost::beast::http;
        if (mode_ == mode::undecided) {
            if (bytes.size() == 0) {
                ec = http::error::need_more;
                return 0;
            }
            const std::string_view view(static_cast<const char*>(bytes.data()), bytes.size());
            if (!reader().read_head(view)) {
                mode_ = mode::parser;  // from its first byte
                return parser_.put(bytes, ec);
            }
            mode_ = mode::one_pass;
            ec = {};
            if (parser_.eager() && body_left_ > 0 && bytes.size() > head_size_) {
                return head_size_ + reader().take_body(bytes + head_size_, ec);
            }
            return head_size_;
        }
        if (mode_ == mode::parser) {
            return parser_.put(bytes, ec);
        }
        if (body_left_ == 0) {
            ec = http::error::stale_parser;  // as the parser, given bytes after its message
            return 0;
        }
        return reader().take_body(bytes, ec);
    }

    // The peer closed: what the message lacks, if anything (basic_parser::put_eof).
    void put_eof(boost::system::error_code& ec) {
        if (mode_ == mode::one_pass) {
            ec = body_left_ > 0
                     ? boost::system::error_code(boost::beast::http::error::partial_message)
                     : boost::system::error_code{};
            return;
        }
        parser_.put_eof(ec);
    }
    void eager(bool v) { parser_.eager(v); }

    bool got_some() const { return mode_ == mode::one_pass || parser_.got_some(); }
    bool is_header_done() const { return mode_ == mode::one_pass || parser_.is_header_done(); }
    bool is_done() const { return mode_ == mode::one_pass ? body_left_ == 0 : parser_.is_done(); }
    bool keep_alive() const { return mode_ == mode::one_pass ? keep_alive_ : parser_.keep_alive(); }
    std::optional<std::uint64_t> content_length() const {
        if (mode_ == mode::one_pass) {
            return length_;
        }
        const auto length = parser_.content_length();
        return length ? std::optional<std::uint64_t>(*length) : std::nullopt;
    }
    // Whether the head was read in one pass (else by the parser): for tests.
    bool read_in_one_pass() const { return mode_ == mode::one_pass; }

  protected:
    template <class... ParserArgs>
    explicit one_pass_reader(std::size_t header_limit, ParserArgs&&... args)
        : parser_(std::forward<ParserArgs>(args)...), header_limit_(header_limit) {
        parser_.header_limit(static_cast<std::uint32_t>(
            std::min<std::size_t>(header_limit, std::numeric_limits<std::uint32_t>::max())));
    }

    // read_head's record of a head it took: its size and framing, and whether it keeps the
    // connection (as basic_parser::keep_alive: HTTP/1.1 unless "close", HTTP/1.0 only with
    // "keep-alive").
    void took_head(std::size_t head_size, const head_framing& framing, bool http11) {
        head_size_ = head_size;
        length_ = framing.length;
        body_left_ = framing.length.value_or(0);
        keep_alive_ = http11 ? !framing.close : framing.keep;
    }

    Parser parser_;
    // The parser judges a head within its first header_limit bytes only: so does read_head.
    std::size_t header_limit_;
    std::uint64_t body_left_ = 0;  // of a head taken in one pass: body bytes still to come

  private:
    enum class mode { undecided, one_pass, parser };
    Reader& reader() { return static_cast<Reader&>(*this); }

    mode mode_ = mode::undecided;
    std::size_t head_size_ = 0;
    std::optional<std::uint64_t> length_;
    bool keep_alive_ = false;
};

}  // namespace stagegate::proxy
