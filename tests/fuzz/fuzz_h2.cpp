// HTTP/2 on the listener: the client preface, then raw bytes as frames (HEADERS with HPACK,
// DATA, CONTINUATION, SETTINGS, WINDOW_UPDATE, RST_STREAM ...). Whatever arrives, the gateway
// answers, resets or sends GOAWAY, and keeps serving a good request afterwards.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "live_gateway.hpp"

namespace {
constexpr const char* good_request =
    "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    "Connection: close\r\n\r\n{}";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto& l = stagegate::fuzz::live_gateway();
    std::string bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    bytes.append(reinterpret_cast<const char*>(data), size);
    stagegate::fuzz::exchange(l.port, bytes);
    static unsigned n = 0;
    if (++n % 256 == 0) {  // still serving
        auto r = stagegate::fuzz::exchange(l.port, good_request);
        if (r.rfind("HTTP/1.1 200", 0) != 0) {
            std::fprintf(stderr, "the gateway stopped serving a good request; it answered:\n%s\n",
                         r.c_str());
            std::abort();
        }
    }
    return 0;
}
