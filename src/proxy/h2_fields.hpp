// Private to proxy: how the HTTP/2 sides (h2_session.cpp to clients, h2_upstream.cpp to
// backends) ask nghttp2's HPACK encoder to treat a field. A field whose value differs on
// nearly every message is sent as a literal "without indexing" (RFC 7541 6.2.2): indexing it
// buys nothing, evicts entries that do repeat (content-type, the version stamps) from the
// 4 KiB dynamic table, and fills that table with entries of one name, which nghttp2's encoder
// then walks one by one (about 60 compares) for every field of that name it encodes.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <string_view>

namespace stagegate::proxy {

// name: lowercase, as HTTP/2 sends it.
inline std::uint8_t hpack_flags(std::string_view name) {
    using namespace std::string_view_literals;
    // A gRPC client's grpc-timeout is its remaining deadline, in its own unit: new per call.
    const bool unique_per_message =
        name == "x-request-id"sv || name == "traceparent"sv || name == "grpc-timeout"sv;
    return unique_per_message ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
}

}  // namespace stagegate::proxy
