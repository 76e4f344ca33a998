// Private to proxy: HTTP/2 client connections (RFC 9113) — cleartext with prior knowledge
// (h2c: the connection opens with the client preface) and over TLS when ALPN chose "h2".
// libnghttp2 does the framing, HPACK, flow control and the protocol's defences; this module
// turns each HTTP/2 stream into one request for handle_request (request_handling.hpp), so
// routing, splitting, stickiness, mirroring, gates and the access log work as for HTTP/1.1.
// Must not touch: routing, forwarding or relaying (it hands requests over and translates the
// answers those steps write back into HEADERS and DATA frames).
// On the worker's thread; nothing here blocks or throws.
#pragma once

#include <openssl/ssl.h>

#include <string>
#include <string_view>

#include "upstream_pool.hpp"

namespace stagegate::proxy {

// The HTTP/2 client connection preface (RFC 9113 3.4).
inline constexpr std::string_view h2_client_preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum class preface_match { http1, http2, undecided };

// Whether the first bytes of a cleartext connection are HTTP/2's preface: `http1` as soon as
// one byte differs (an HTTP/1.1 request line never starts with "PRI *"), `undecided` while
// what arrived is a proper prefix of it.
preface_match match_h2_preface(std::string_view first_bytes);

// Whether the TLS handshake on `ssl` settled on HTTP/2 by ALPN (offer_h2_alpn in worker.hpp).
bool alpn_chose_h2(SSL* ssl);

// Serves one HTTP/2 connection until it ends: `read_ahead` holds the bytes already read (the
// preface, and whatever followed it). `slot` is the connection's, linked by the caller; the
// connection's idle timeout and drain go through it. Returns once every stream's request has
// ended; the caller closes the connection.
template <class Stream>
task<void> serve_h2(Stream& stream, worker& w, session_slot& slot, beast::flat_buffer& read_ahead,
                    const std::string& client_address);

}  // namespace stagegate::proxy
