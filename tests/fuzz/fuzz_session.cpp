// The downstream HTTP session: raw bytes to the gateway's listener. Whatever arrives, the
// gateway answers or closes, and keeps serving a good request afterwards.
#include "live_gateway.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace {
constexpr const char* good_request =
    "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    "Connection: close\r\n\r\n{}";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto& l = stagegate::fuzz::live_gateway();
    stagegate::fuzz::exchange(l.port, {reinterpret_cast<const char*>(data), size});
    static unsigned n = 0;
    if (++n % 256 == 0) {  // still serving
        auto t0 = std::chrono::steady_clock::now();
        auto r = stagegate::fuzz::exchange(l.port, good_request);
        if (r.rfind("HTTP/1.1 200", 0) != 0) {
            auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - t0).count();
            auto again = stagegate::fuzz::exchange(l.port, good_request);
            std::fprintf(stderr,
                         "the gateway stopped serving a good request; after %lld ms it answered:\n"
                         "%s\nand a moment later:\n%s\n",
                         static_cast<long long>(ms), r.c_str(), again.c_str());
            std::abort();
        }
    }
    return 0;
}
