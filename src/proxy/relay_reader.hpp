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
#include "one_pass_reader.hpp"

namespace stagegate::proxy {

class relay_reader : public one_pass_reader<relay_reader, relay_response_parser> {
  public:
    // As relay_response_parser's: the client's head goes into `head`. Body bytes go into the
    // buffer set_buffer gave, need_buffer once it is full, as Beast's buffer body.
    relay_reader(std::string& head, unsigned client_version, bool head_request,
                 std::size_t header_limit);

    void set_buffer(char* data, std::size_t size) { parser_.set_buffer(data, size); }
    std::size_t buffer_left() const { return parser_.buffer_left(); }
    bool need_eof() const { return !read_in_one_pass() && parser_.need_eof(); }
    unsigned status() const { return parser_.status(); }
    bool encoded() const { return parser_.encoded(); }
    bool event_stream() const { return parser_.event_stream(); }

  private:
    friend class one_pass_reader<relay_reader, relay_response_parser>;
    bool read_head(std::string_view bytes);
    // Body bytes of a head taken in one pass, up to its length, into the lent buffer.
    std::size_t take_body(boost::asio::const_buffer bytes, boost::system::error_code& ec);

    bool head_request_;
};

}  // namespace stagegate::proxy
