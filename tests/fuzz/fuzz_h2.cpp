// HTTP/2 on the listener: the client preface, then raw bytes as frames (HEADERS with HPACK,
// DATA, CONTINUATION, SETTINGS, WINDOW_UPDATE, RST_STREAM ...). Whatever arrives, the gateway
// answers, resets or sends GOAWAY, and keeps serving a good request afterwards.
#include "live_gateway.hpp"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto& l = stagegate::fuzz::live_gateway();
    std::string bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    bytes.append(reinterpret_cast<const char*>(data), size);
    stagegate::fuzz::exchange(l.port, bytes);
    stagegate::fuzz::check_still_serving(l.port);
    return 0;
}
