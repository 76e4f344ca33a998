// Private to proxy: reads a backend's HTTP/1.1 answer for relaying: its head in one pass when
// it is of the common kind, else with relay_response_parser (Beast's parser); the body after
// it into the buffers the exchange lends. Either way the client's head is written by
// relay_response_parser's own callbacks, fed here with what the one pass read.
//
// Why (#24): Beast's parser of the answer head was about 2.3k instructions of a proxied request's
// 16.6k (loadtest/RESULTS.md run 35; 0.6k fewer with this, run 37). The one pass takes a head that
// came whole in the first bytes and holds nothing but a status line "HTTP/1.0|1.1 ddd reason" (a
// status of 200 to 599 other than 204 and 304, a reason of visible ASCII and blanks); field lines
// of head_scan's grammar; exactly one Content-Length, of digits; Connection or Proxy-Connection
// only as "close" or "keep-alive"; no Transfer-Encoding and no Upgrade; and not an answer to HEAD.
// Any other answer (chunked or close-delimited bodies, 1xx, odd but valid heads, refusals) goes to
// the parser from its first byte. What the one pass makes of an answer (the client's head, status,
// length, keep-alive, body bytes, bytes used, outcome) is held to the parser's by
// tests/unit/proxy/relay_reader_test.cpp and fuzz_answer_head.
#pragma once

#include <boost/asio/buffer.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "http_util.hpp"

namespace stagegate::proxy {

class relay_reader {
  public:
    // As relay_response_parser's: the client's head goes into `head`.
    relay_reader(std::string& head, unsigned client_version, bool head_request,
                 std::size_t header_limit);

    // As basic_parser::put: what it used of `bytes`. Until the head is whole: nothing, with
    // need_more. Not eager about the body in the call that completes the head. Body bytes go
    // into the buffer set_buffer gave, need_buffer once it is full, as Beast's buffer body.
    std::size_t put(boost::asio::const_buffer bytes, boost::system::error_code& ec);
    // The backend closed: what the answer lacks, if anything (basic_parser::put_eof).
    void put_eof(boost::system::error_code& ec);
    void eager(bool v) { parser_.eager(v); }
    void set_buffer(char* data, std::size_t size) { parser_.set_buffer(data, size); }
    std::size_t buffer_left() const { return parser_.buffer_left(); }

    bool got_some() const;
    bool is_header_done() const;
    bool is_done() const;
    bool keep_alive() const;
    bool need_eof() const;
    std::optional<std::uint64_t> content_length() const;
    unsigned status() const { return parser_.status(); }
    bool encoded() const { return parser_.encoded(); }
    bool event_stream() const { return parser_.event_stream(); }
    // Whether the head was read in one pass (else by the parser): for tests.
    bool read_in_one_pass() const { return mode_ == mode::one_pass; }

  private:
    enum class mode { undecided, one_pass, parser };
    bool read_head(std::string_view bytes);
    std::size_t take_body(boost::asio::const_buffer bytes, boost::system::error_code& ec);

    relay_response_parser parser_;
    mode mode_ = mode::undecided;
    bool head_request_;
    std::size_t header_limit_;
    std::size_t head_size_ = 0;
    std::uint64_t length_ = 0;
    std::uint64_t body_left_ = 0;
    bool keep_alive_ = false;
};

}  // namespace stagegate::proxy
