// The downstream HTTP session: raw bytes to the gateway's listener. Whatever arrives, the
// gateway answers or closes, and keeps serving a good request afterwards.
#include "live_gateway.hpp"

#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto& l = stagegate::fuzz::live_gateway();
    stagegate::fuzz::exchange(l.port, {reinterpret_cast<const char*>(data), size});
    stagegate::fuzz::check_still_serving(l.port);
    return 0;
}
