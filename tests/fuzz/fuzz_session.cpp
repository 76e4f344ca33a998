// The downstream HTTP session: raw bytes to the gateway's listener. Whatever arrives, the
// gateway answers or closes, and keeps serving a good request afterwards.
#include "live_gateway.hpp"

#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto& l = stagegate::fuzz::live_gateway();
    stagegate::fuzz::exchange(l.port, {reinterpret_cast<const char*>(data), size});
    static unsigned n = 0;
    if (++n % 256 == 0) {  // still serving
        auto r = stagegate::fuzz::exchange(
            l.port, "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                    "Connection: close\r\n\r\n{}");
        if (r.rfind("HTTP/1.1 200", 0) != 0) {
            std::abort();
        }
    }
    return 0;
}
