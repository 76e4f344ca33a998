// Private to proxy: nghttp2's heap for the sessions a worker owns, served from the worker
// thread's block_cache instead of malloc. nghttp2 allocates per stream and per frame (its
// stream objects, outbound items, header copies, HPACK entries): about 35 allocations per
// proxied gRPC call, and under many calls in flight most missed glibc's small per-thread
// cache. A session is used and freed on its worker's thread, so each block goes back to the
// list it came from. Must not touch: framing or sessions themselves (h2_session.cpp,
// h2_upstream.cpp own those).
#pragma once

#include <nghttp2/nghttp2.h>

namespace stagegate::proxy {

// For nghttp2_session_server_new3 / nghttp2_session_client_new3: static, lives forever.
nghttp2_mem* h2_memory();

}  // namespace stagegate::proxy
