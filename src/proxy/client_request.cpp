#include "client_request.hpp"

#include <algorithm>
#include <boost/beast/http/error.hpp>

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
    const auto at = static_cast<std::uint32_t>(bytes_.size());
    bytes_.append(s.data(), s.size());
    return at;
}

client_request::field_ref client_request::at(std::size_t index) const {
    const entry& e = fields_[index];
    field_ref f;
    f.name_ = e.name;
    f.name_string_ = slice(e.name_at, e.name_size);
    f.value_ = slice(e.value_at, e.value_size);
    return f;
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
    e.name_at = keep(name_string);
    e.name_size = static_cast<std::uint32_t>(name_string.size());
    e.value_at = keep(value);
    e.value_size = static_cast<std::uint32_t>(value.size());
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
    first->value_at = keep(value);
    first->value_size = static_cast<std::uint32_t>(value.size());
    fields_.erase(std::remove_if(std::next(first), fields_.end(),
                                 [&](const entry& e) { return named(e, name, name_string); }),
                  fields_.end());
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

}  // namespace stagegate::proxy
