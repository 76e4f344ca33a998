// Private to proxy: an answer's fields and trailers as the HTTP/2 sides hold them: names and
// values side by side in one string, each field's place beside it. A backend's answer over
// HTTP/2 is stored so as it arrives (h2_upstream.cpp), and an HTTP/2 client's answer is handed
// to nghttp2 from it (answer_reader, h2_session.cpp): a relay between the two copies fields,
// it neither writes them as HTTP/1.1 lines nor parses them back.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "block_cache.hpp"

namespace stagegate::proxy {

struct answer_fields {
    // name at, length, value at, length: in `bytes`.
    using span = std::array<std::uint32_t, 4>;
    // The most an answer's fields and trailers may take together (an HTTP/2 backend's stream
    // past it is reset): the bound answer_reader holds an HTTP/1.1 head to.
    static constexpr std::size_t max_bytes = 64 * 1024;

    cached_string bytes;
    cached_vector<span> head;
    cached_vector<span> trailers;

    void add_head(std::string_view name, std::string_view value) { add(head, name, value); }
    void add_trailer(std::string_view name, std::string_view value) { add(trailers, name, value); }
    // A field already appended to `bytes` from `at` on, name then value (answer_reader
    // lowercases a name where it lands).
    void add_written(cached_vector<span>& to, std::size_t at, std::size_t name_size,
                     std::size_t value_size) {
        to.push_back({static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(name_size),
                      static_cast<std::uint32_t>(at + name_size),
                      static_cast<std::uint32_t>(value_size)});
    }
    std::string_view name(const span& s) const { return {bytes.data() + s[0], s[1]}; }
    std::string_view value(const span& s) const { return {bytes.data() + s[2], s[3]}; }
    void clear() {
        bytes.clear();
        head.clear();
        trailers.clear();
    }

  private:
    void add(cached_vector<span>& to, std::string_view name, std::string_view value) {
        const auto at = bytes.size();
        bytes.append(name);
        bytes.append(value);
        add_written(to, at, name.size(), value.size());
    }
};

}  // namespace stagegate::proxy
