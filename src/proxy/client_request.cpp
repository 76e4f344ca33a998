#include "client_request.hpp"

#include <algorithm>
#include <array>
#include <boost/beast/http/error.hpp>
#include <cstring>
#include <functional>
#include <limits>
#include <tuple>

#include "head_scan.hpp"
#include "stagegate/core/text.hpp"

namespace stagegate::proxy {

client_request::client_request(http::verb method, std::string_view target, unsigned version)
    : version_(version) {
    this->method(method);
    this->target(target);
}

void client_request::method(http::verb v) {
    method_ = v;
    const auto s = http::to_string(v);
    method_at_ = keep(std::string_view(s.data(), s.size()));
    method_size_ = static_cast<std::uint32_t>(s.size());
}

void client_request::method_string(std::string_view s) {
    method_ = http::string_to_verb(s);
    method_at_ = keep(s);
    method_size_ = static_cast<std::uint32_t>(s.size());
}

void client_request::target(std::string_view t) {
    target_at_ = keep(t);
    target_size_ = static_cast<std::uint32_t>(t.size());
}

std::uint32_t client_request::keep(std::string_view s) {
    return keep_both(s, {}).first;
}

std::pair<std::uint32_t, std::uint32_t> client_request::keep_both(std::string_view a,
                                                                  std::string_view b) {
    const char* const block = bytes_.data();
    const std::size_t at = bytes_.size();
    const auto offset_in_block = [&](std::string_view s) {
        const bool inside = !s.empty() && std::less_equal<const char*>{}(block, s.data()) &&
                            std::less<const char*>{}(s.data(), block + at);
        return inside ? static_cast<std::size_t>(s.data() - block) : std::string_view::npos;
    };
    const std::size_t a_from = offset_in_block(a);
    const std::size_t b_from = offset_in_block(b);
    bytes_.reserve(at + a.size() + b.size());  // may move the block; the appends will not
    if (a_from != std::string_view::npos) {
        a = std::string_view(bytes_.data() + a_from, a.size());
    }
    if (b_from != std::string_view::npos) {
        b = std::string_view(bytes_.data() + b_from, b.size());
    }
    bytes_.append(a.data(), a.size());
    bytes_.append(b.data(), b.size());
    return {static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(at + a.size())};
}

bool client_request::named(const entry& e, http::field name, std::string_view name_string) const {
    if (name != http::field::unknown) {
        return e.name == name;
    }
    return e.name == http::field::unknown &&
           ascii_iequal(slice(e.name_at, e.name_size), name_string);
}

client_request::const_iterator client_request::find(http::field name) const {
    std::size_t i = 0;
    while (i < fields_.size() && fields_[i].name != name) {
        ++i;
    }
    return {this, i};
}

// A configured name may be one Beast knows (a sticky header "Cookie"): those are compared as
// written too, since the walk is cheaper than looking the name up in Beast's table first.
client_request::const_iterator client_request::find(std::string_view name) const {
    std::size_t i = 0;
    while (i < fields_.size() &&
           !ascii_iequal(slice(fields_[i].name_at, fields_[i].name_size), name)) {
        ++i;
    }
    return {this, i};
}

std::string_view client_request::operator[](http::field name) const {
    const auto it = find(name);
    return it == end() ? std::string_view{} : it->value();
}

std::string_view client_request::operator[](std::string_view name) const {
    const auto it = find(name);
    return it == end() ? std::string_view{} : it->value();
}

void client_request::insert(http::field name, std::string_view name_string,
                            std::string_view value) {
    entry e{};
    e.name = name;
    e.name_size = static_cast<std::uint32_t>(name_string.size());
    e.value_size = static_cast<std::uint32_t>(value.size());
    std::tie(e.name_at, e.value_at) = keep_both(name_string, value);
    fields_.push_back(e);
}

void client_request::insert(http::field name, std::string_view value) {
    const auto spelled = http::to_string(name);
    insert(name, std::string_view(spelled.data(), spelled.size()), value);
}

void client_request::insert(std::string_view name, std::string_view value) {
    insert(http::string_to_field(name), name, value);
}

void client_request::replace(http::field name, std::string_view name_string,
                             std::string_view value) {
    auto first = std::find_if(fields_.begin(), fields_.end(),
                              [&](const entry& e) { return named(e, name, name_string); });
    if (first == fields_.end()) {
        insert(name, name_string, value);
        return;
    }
    // The others go first: `name_string` may be a view into the block, which keeping the
    // value may move.
    fields_.erase(std::remove_if(std::next(first), fields_.end(),
                                 [&](const entry& e) { return named(e, name, name_string); }),
                  fields_.end());
    first->value_at = keep(value);
    first->value_size = static_cast<std::uint32_t>(value.size());
}

void client_request::set(http::field name, std::string_view value) {
    const auto spelled = http::to_string(name);
    replace(name, std::string_view(spelled.data(), spelled.size()), value);
}

void client_request::set(std::string_view name, std::string_view value) {
    replace(http::string_to_field(name), name, value);
}

void client_request::erase(http::field name) {
    fields_.erase(std::remove_if(fields_.begin(), fields_.end(),
                                 [&](const entry& e) { return e.name == name; }),
                  fields_.end());
}

void client_request::erase(std::string_view name) {
    const auto known = http::string_to_field(name);
    fields_.erase(std::remove_if(fields_.begin(), fields_.end(),
                                 [&](const entry& e) { return named(e, known, name); }),
                  fields_.end());
}

void request_parser::on_request_impl(http::verb method, boost::beast::string_view method_string,
                                     boost::beast::string_view target, int version,
                                     boost::system::error_code&) {
    // Room for a typical head at once (one block-cache block), not a string doubling its way
    // up field by field; a larger one grows as it comes.
    request_.bytes_.reserve(480);
    request_.fields_.reserve(16);
    request_.method_ = method;
    request_.method_at_ = request_.keep(method_string);
    request_.method_size_ = static_cast<std::uint32_t>(method_string.size());
    request_.target(target);
    request_.version_ = version == 10 ? 10 : 11;
}

void request_parser::on_field_impl(http::field name, boost::beast::string_view name_string,
                                   boost::beast::string_view value, boost::system::error_code& ec) {
    // Beast hands a value that was not folded as a view of the line itself, starting at the
    // first byte after the colon and its blanks (an empty one too: its line's CR). A folded
    // value is Beast's copy, or starts on a later line. Only the line's own bytes are read
    // here: the blanks after the colon, up to the first other byte, which the line has (its CR
    // at least).
    const char* p = name_string.data() + name_string.size() + 1;  // past the colon
    while (p != value.data() && (*p == ' ' || *p == '\t')) {
        ++p;
    }
    if (p != value.data()) {
        obs_fold_ = true;
        ec = http::error::bad_value;
        return;
    }
    if (is_header_done()) {
        return;  // a trailer field: dropped (see the class comment)
    }
    request_.insert(name, name_string, value);
}

void request_parser::on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                                       boost::system::error_code&) {
    // The parser has already held a length to the body limit.
    if (content_length) {
        request_.body_.reserve(static_cast<std::size_t>(*content_length));
    }
}

std::size_t request_parser::on_body_impl(boost::beast::string_view body,
                                         boost::system::error_code&) {
    request_.body_.append(body.data(), body.size());
    return body.size();
}

request_reader::request_reader(std::size_t header_limit, std::uint64_t body_limit)
    : one_pass_reader(header_limit), body_limit_(body_limit) {
    parser_.body_limit(body_limit);
}

std::size_t request_reader::take_body(boost::asio::const_buffer bytes,
                                      boost::system::error_code& ec) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(bytes.size(), body_left_));
    parser_.get().body_.append(static_cast<const char*>(bytes.data()), n);
    body_left_ -= n;
    ec = {};
    return n;
}

// Declines (false) at the first byte outside what the class comment lists, having kept
// nothing: the parser then reads the head from its start.
bool request_reader::read_head(std::string_view bytes) {
    const char* const first = bytes.data();
    // The parser judges a head within its first header_limit bytes only.
    const char* const end =
        head_scan::head_end(first, first + std::min(bytes.size(), header_limit_));
    if (end == nullptr) {
        return false;  // not whole (or past the limit): the parser's to wait for or refuse
    }
    const char* p = first;
    while (head_scan::token_char(*p)) {
        ++p;
    }
    if (p == first || *p != ' ') {
        return false;
    }
    const std::string_view method(first, static_cast<std::size_t>(p - first));
    const char* const target = ++p;
    while (head_scan::visible(*p)) {
        ++p;
    }
    if (p == target || *p != ' ') {
        return false;
    }
    const auto target_size = static_cast<std::size_t>(p - target);
    ++p;
    if (end - p < 10 || std::memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
        p[8] != '\r' || p[9] != '\n') {
        return false;
    }
    const unsigned version = p[7] == '1' ? 11 : 10;
    p += 10;

    client_request& req = parser_.get();
    auto& fields = req.fields_;
    fields.reserve(16);
    head_framing framing;
    const auto decline = [&fields] {
        fields.clear();
        return false;
    };
    for (;;) {
        std::string_view name_string;
        std::string_view value_string;
        const auto got = head_scan::next_field(p, name_string, value_string);
        if (got == head_scan::line::end_of_head) {
            break;
        }
        if (got == head_scan::line::decline) {
            return decline();
        }
        const http::field known = http::string_to_field(name_string);
        if (!framing.take(known, value_string, body_limit_)) {
            return decline();
        }
        client_request::entry e{};
        e.name = known;
        e.name_at = static_cast<std::uint32_t>(name_string.data() - first);
        e.name_size = static_cast<std::uint32_t>(name_string.size());
        e.value_at = static_cast<std::uint32_t>(value_string.data() - first);
        e.value_size = static_cast<std::uint32_t>(value_string.size());
        fields.push_back(e);
    }
    const auto head_size = static_cast<std::size_t>(p - first);
    // The head's bytes, once: the fields' offsets above are into them.
    req.bytes_.assign(first, head_size);
    req.method_ = http::string_to_verb(method);
    req.method_at_ = 0;
    req.method_size_ = static_cast<std::uint32_t>(method.size());
    req.target_at_ = static_cast<std::uint32_t>(target - first);
    req.target_size_ = static_cast<std::uint32_t>(target_size);
    req.version_ = version;
    if (framing.length.value_or(0) > 0) {
        req.body_.reserve(static_cast<std::size_t>(*framing.length));
    }
    took_head(head_size, framing, version == 11);
    return true;
}

}  // namespace stagegate::proxy
