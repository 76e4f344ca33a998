// Private to proxy: writing a head into a std::string through a pointer, into room made ahead,
// instead of one append per piece (each append checks and may move the string; a forwarded
// request's head is a dozen or more pieces). The string is reused from request to request, so
// the room is already there after the first; `finish` gives the string its final size.
#pragma once

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

namespace stagegate::proxy {

class string_cursor {
public:
    // Writes after what `out` holds; makes `ahead` bytes of room at once.
    explicit string_cursor(std::string& out, std::size_t ahead = 1024)
        : out_(out), at_(out.size()) {
        out_.resize(at_ + ahead);
    }
    string_cursor(const string_cursor&) = delete;
    string_cursor& operator=(const string_cursor&) = delete;

    // Where `n` more bytes go; write them, then `advance(n)`.
    char* room(std::size_t n) {
        if (out_.size() - at_ < n) {
            out_.resize(std::max(2 * out_.size(), at_ + n));
        }
        return out_.data() + at_;
    }
    void advance(std::size_t n) { at_ += n; }
    void put(std::string_view piece) {
        char* p = room(piece.size());
        if (!piece.empty()) {
            std::memcpy(p, piece.data(), piece.size());
        }
        at_ += piece.size();
    }
    // "name: value\r\n", with one check for room (most of what a head holds).
    void field_line(std::string_view name, std::string_view value) {
        const std::size_t n = name.size() + value.size() + 4;
        char* p = room(n);
        std::memcpy(p, name.data(), name.size());
        p += name.size();
        *p++ = ':';
        *p++ = ' ';
        if (!value.empty()) {
            std::memcpy(p, value.data(), value.size());
            p += value.size();
        }
        p[0] = '\r';
        p[1] = '\n';
        at_ += n;
    }
    // Bytes at `offset` of the string, already written.
    char* at(std::size_t offset) { return out_.data() + offset; }
    std::size_t written_to() const { return at_; }
    void finish() { out_.resize(at_); }

private:
    std::string& out_;
    std::size_t at_;
};

}  // namespace stagegate::proxy
