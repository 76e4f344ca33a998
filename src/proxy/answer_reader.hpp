// Private to proxy: reads back the HTTP/1.1 answer this process wrote for an HTTP/2 stream
// (handle_request and send_error write every answer as HTTP/1.1; h2_session.cpp sends it as
// HEADERS, DATA and trailers). The bytes are the gateway's own: a status line, fields the
// relay already checked or wrote itself, and a body framed by Content-Length or by its own
// chunked encoding (exchange re-chunks what it relays). So this reads exactly that, without a
// general parser's field table and callbacks (Beast's took about a tenth of a proxied gRPC
// call's instructions), and takes anything else for a defect: the stream is reset. Names are
// lowercased and connection-specific fields left out, as HTTP/2 requires (RFC 9113 8.2).
// An answer relayed from an HTTP/2 backend is not read at all: h2_exchange hands over its
// parts as they are (give_head, body bytes unframed, end_given).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "answer_fields.hpp"
#include "block_cache.hpp"

namespace stagegate::proxy {

class answer_reader {
  public:
    answer_reader();

    // A HEAD request's answer: its head says how long a body would be, and none follows.
    void skip_body() { head_request_ = true; }

    // Takes `size` bytes of the answer; body bytes (without their framing) are appended to
    // `body`. False when they are not an answer this process writes (the stream is reset).
    // Bytes after the end of the answer are ignored.
    bool read(const char* data, std::size_t size, cached_string& body);

    // The other way in: an answer given in parts. Its status, then its fields (lowercase
    // names, nothing connection-specific: an HTTP/2 backend's), with which its head is done;
    // then its body through read(), taken as it is (no framing); then its end, after its
    // trailers (fields().add_trailer).
    void give_head(unsigned status) {
        status_ = status;
        state_ = state::given_body;
    }
    answer_fields& given_fields() { return fields_; }
    void end_given() { state_ = state::done; }

    bool header_done() const { return state_ > state::fields; }
    bool done() const { return state_ == state::done; }
    unsigned status() const { return status_; }
    // The head's fields, and a chunked answer's trailers (a gRPC answer's grpc-status).
    const answer_fields& fields() const { return fields_; }

    // The longest head (and trailer section) taken, as Beast's header_limit was.
    static constexpr std::size_t max_head_bytes = answer_fields::max_bytes;

  private:
    enum class state {
        status_line,
        fields,       // field lines up to the empty line
        sized_body,   // Content-Length bytes left
        chunk_size,   // a chunk's size line
        chunk_data,   // the chunk's bytes left
        chunk_end,    // the CRLF after a chunk's bytes
        trailers,     // field lines after the last chunk, up to the empty line
        until_close,  // neither length nor chunked: a body that ends with the connection
        given_body,   // an answer given in parts: every byte read is the body's
        done
    };
    enum class line_status { ok, more, bad };

    // The next line (without its CRLF) from p, joined with what earlier writes left: most
    // lines are whole in one write and are read where they are, without a copy.
    line_status next_line(const char*& p, const char* end, std::string_view& line);
    bool parse_status_line(std::string_view line);
    bool parse_field_line(std::string_view line, bool trailer);
    bool parse_chunk_size(std::string_view line);
    bool begin_body();

    state state_ = state::status_line;
    bool head_request_ = false;
    bool chunked_ = false;
    bool has_length_ = false;
    unsigned status_ = 0;
    std::uint64_t left_ = 0;      // body or chunk bytes still to come
    std::size_t line_bytes_ = 0;  // of the head (or a size line, or the trailers) so far
    // A line split between writes, as far as it has come (after a chunk's bytes: the CR of
    // its CRLF when the LF is still to come).
    cached_string line_;
    answer_fields fields_;
};

}  // namespace stagegate::proxy
