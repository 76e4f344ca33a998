// Private to proxy: a client's request as the request path holds it (request line, header
// fields in the order they came, body), and the parser that fills one from HTTP/1.1 bytes.
// HTTP/2 streams fill the same type from their header frames (h2_session).
//
// Why not Beast's request: its field container looks every name up in a table, inserts it
// into a tree ordered by a case-insensitive compare and allocates it on its own, and a
// request's few lookups then walk that tree: a fifth of the request path's instructions
// (loadtest/RESULTS.md run 33). Here the fields are a flat list of offsets into one block of
// bytes, both drawn from the worker's block cache; the gateway reads a handful of fields, each
// found by a walk comparing the enum Beast's parser already computed, and forwards the rest as
// they came. Parsing itself stays Beast's (basic_parser): the syntax and framing checks that
// keep requests from being smuggled are the vetted ones.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string_view>
#include <utility>

#include "block_cache.hpp"
#include "one_pass_reader.hpp"

namespace stagegate::proxy {

namespace http = boost::beast::http;

class client_request {
    struct entry {
        std::uint32_t name_at;
        std::uint32_t value_at;
        std::uint32_t value_size;
        std::uint32_t name_size;
        http::field name;
    };

  public:
    // One field as the request holds it; views into the request, valid until it changes.
    class field_ref {
      public:
        http::field name() const { return name_; }
        std::string_view name_string() const { return name_string_; }
        std::string_view value() const { return value_; }

      private:
        friend class client_request;
        http::field name_ = http::field::unknown;
        std::string_view name_string_;
        std::string_view value_;
    };

    class const_iterator {
      public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = field_ref;
        using difference_type = std::ptrdiff_t;
        using pointer = const field_ref*;
        using reference = field_ref;

        const_iterator() = default;
        field_ref operator*() const { return owner_->at(index_); }
        // What `it->value()` reads: the field, held by the proxy this returns.
        struct arrow {
            field_ref ref;
            const field_ref* operator->() const { return &ref; }
        };
        arrow operator->() const { return {owner_->at(index_)}; }
        const_iterator& operator++() {
            ++index_;
            return *this;
        }
        const_iterator operator++(int) {
            auto before = *this;
            ++index_;
            return before;
        }
        bool operator==(const const_iterator& other) const { return index_ == other.index_; }

      private:
        friend class client_request;
        const_iterator(const client_request* owner, std::size_t index)
            : owner_(owner), index_(index) {}
        const client_request* owner_ = nullptr;
        std::size_t index_ = 0;
    };

    client_request() = default;
    client_request(http::verb method, std::string_view target, unsigned version);

    http::verb method() const { return method_; }
    std::string_view method_string() const { return slice(method_at_, method_size_); }
    void method(http::verb v);
    // A method as written; an unknown one keeps its spelling (http::verb::unknown).
    void method_string(std::string_view s);
    std::string_view target() const { return slice(target_at_, target_size_); }
    void target(std::string_view t);
    unsigned version() const { return version_; }  // 10 or 11
    void version(unsigned v) { version_ = v; }

    const_iterator begin() const { return {this, 0}; }
    const_iterator end() const { return {this, fields_.size()}; }
    std::size_t field_count() const { return fields_.size(); }

    // The first field with a name, as sent (not whichever a tree meets first), or end(): a
    // walk over the head's few fields comparing the enum each stores (a known name) or the
    // size and then the letters of a name as written, in any case (a configured one: the
    // sticky header, the request id, the forced version).
    const_iterator find(http::field name) const;
    const_iterator find(std::string_view name) const;
    // The first such field's value, or empty.
    std::string_view operator[](http::field name) const;
    std::string_view operator[](std::string_view name) const;

    // Adds a field after the others. By name as written, its enum is looked up (Beast's
    // string_to_field); by enum, its name is Beast's spelling.
    void insert(http::field name, std::string_view value);
    void insert(std::string_view name, std::string_view value);
    // The parser's insert: both known, the name as the client spelled it.
    void insert(http::field name, std::string_view name_string, std::string_view value);
    // Replaces every field of a name by one, in the first one's place (else at the end).
    void set(http::field name, std::string_view value);
    void set(std::string_view name, std::string_view value);
    // Removes every field of a name.
    void erase(http::field name);
    void erase(std::string_view name);

    // Room for a head of about `bytes` bytes in `fields` fields, so that inserting them one by
    // one does not grow the request's blocks step by step (an HTTP/2 stream's head).
    void reserve(std::size_t bytes, std::size_t fields) {
        bytes_.reserve(bytes);
        fields_.reserve(fields);
    }

    cached_string& body() { return body_; }
    const cached_string& body() const { return body_; }

  private:
    friend class request_parser;
    friend class request_reader;
    field_ref at(std::size_t index) const {  // inline: every walk over the fields calls it
        const entry& e = fields_[index];
        field_ref f;
        f.name_ = e.name;
        f.name_string_ = slice(e.name_at, e.name_size);
        f.value_ = slice(e.value_at, e.value_size);
        return f;
    }
    std::string_view slice(std::uint32_t at, std::size_t size) const {
        return {bytes_.data() + at, size};
    }
    // Appends bytes to the block and returns where they start; keep_both appends two and
    // returns where each starts. Any of them may be a view into the block itself (a value
    // copied from another field, a name from a field_ref): it is taken as an offset before
    // the block grows, since growing moves the bytes such a view points at.
    std::uint32_t keep(std::string_view s);
    std::pair<std::uint32_t, std::uint32_t> keep_both(std::string_view a, std::string_view b);
    bool named(const entry& e, http::field name, std::string_view name_string) const;
    void replace(http::field name, std::string_view name_string, std::string_view value);

    cached_string bytes_;  // the method, target, names and values the fields point into
    cached_vector<entry> fields_;
    http::verb method_ = http::verb::unknown;
    std::uint32_t method_at_ = 0;
    std::uint32_t method_size_ = 0;
    std::uint32_t target_at_ = 0;
    std::uint32_t target_size_ = 0;
    unsigned version_ = 11;
    cached_string body_;
};

// A client request's parser: Beast's basic_parser judging the bytes, a client_request holding
// what it accepted.
// - Refuses obsolete line folding (a header line that begins with a blank continues the one
//   before). RFC 9112 5.2 lets a server refuse it with 400, as nginx does, or unfold it, as
//   Beast does without telling: unfolded, "Transfer-Encoding:\r\n chunked" is chunked to us,
//   and no Transfer-Encoding at all to a server in front of us that does not unfold. A fold
//   fails the read (bad_value) with obs_fold() set, in the head and in a chunked body's
//   trailers alike.
// - Drops a chunked body's trailer fields: a proxy must not make them headers (RFC 9110
//   6.5.1: they could carry Host, Authorization or routing headers past checks made on the
//   head). nginx drops request trailers too.
class request_parser final : public http::basic_parser<true> {
  public:
    client_request& get() { return request_; }
    const client_request& get() const { return request_; }
    bool obs_fold() const { return obs_fold_; }

  private:
    void on_request_impl(http::verb method, boost::beast::string_view method_string,
                         boost::beast::string_view target, int version,
                         boost::system::error_code& ec) override;
    void on_response_impl(int, boost::beast::string_view, int,
                          boost::system::error_code&) override {}
    void on_field_impl(http::field name, boost::beast::string_view name_string,
                       boost::beast::string_view value, boost::system::error_code& ec) override;
    void on_header_impl(boost::system::error_code&) override {}
    void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                           boost::system::error_code& ec) override;
    std::size_t on_body_impl(boost::beast::string_view body,
                             boost::system::error_code& ec) override;
    void on_chunk_header_impl(std::uint64_t, boost::beast::string_view,
                              boost::system::error_code&) override {}
    std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body,
                                   boost::system::error_code& ec) override {
        return on_body_impl(body, ec);
    }
    void on_finish_impl(boost::system::error_code&) override {}

    client_request request_;
    bool obs_fold_ = false;
};

// Reads one client request: its head in one pass when it is of the common kind, else with
// request_parser; the body after it. The one pass (#24: Beast's request-head parser was a
// fifth of a request's instructions, loadtest/RESULTS.md run 33; 1.5k fewer, run 35) takes a head
// that came whole in the first bytes and holds nothing but a request line of a token method,
// a target of visible ASCII and HTTP/1.0 or 1.1; field lines of a token name, a colon, and a
// value of visible ASCII, spaces and tabs; CRLF line ends; at most one Content-Length, of
// digits within the body limit; Connection or Proxy-Connection only as "close" or
// "keep-alive"; no Transfer-Encoding and no Upgrade. It must agree with Beast's parser on
// every head it takes: the syntax it accepts is a subset of what Beast accepts (RFC 9112's
// grammar without obs-text, folds, lists or leniencies), and it records the same request
// line, fields (their names' enums from Beast's table, values without their surrounding
// blanks), length and keep-alive. Any other head, or one that came in pieces, goes to Beast's
// parser from its first byte, whose answer it then is: every refusal, every odd but valid
// head, every chunked body. tests/unit/proxy/client_request_test.cpp and fuzz_request_head
// hold the two to agreeing.
class request_reader : public one_pass_reader<request_reader, request_parser> {
  public:
    request_reader(std::size_t header_limit, std::uint64_t body_limit);

    bool chunked() const { return !read_in_one_pass() && parser_.chunked(); }
    bool obs_fold() const { return parser_.obs_fold(); }
    client_request& get() { return parser_.get(); }
    const client_request& get() const { return parser_.get(); }

  private:
    friend class one_pass_reader<request_reader, request_parser>;
    bool read_head(std::string_view bytes);
    // Body bytes of a head taken in one pass, up to its length.
    std::size_t take_body(boost::asio::const_buffer bytes, boost::system::error_code& ec);

    std::uint64_t body_limit_;
};

}  // namespace stagegate::proxy
