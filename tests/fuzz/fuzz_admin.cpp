// The admin API: raw bytes to the admin listener (requests, bodies, commands). Whatever
// arrives, it answers or closes, and keeps answering /healthz.
#include "live_gateway.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto& l = stagegate::fuzz::live_gateway();
    stagegate::fuzz::exchange(l.admin, {reinterpret_cast<const char*>(data), size});
    static unsigned n = 0;
    if (++n % 256 == 0) {
        auto r = stagegate::fuzz::exchange(
            l.admin, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if (r.rfind("HTTP/1.1 200", 0) != 0) {
            std::fprintf(stderr, "the admin API stopped answering /healthz; it answered:\n%s\n",
                         r.c_str());
            std::abort();
        }
    }
    return 0;
}
