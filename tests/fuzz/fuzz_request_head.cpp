// The request path's two readers on any bytes: where request_reader reads a head in one pass,
// what it makes of the request must be what Beast's parser makes of it (request line, fields,
// length, keep-alive, body, bytes used, outcome); a difference aborts. The first byte picks
// how many of the rest arrive first (the head may come in pieces), the second the head limit.
#include "support/request_reading.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace stagegate::proxy;
    if (size < 2) {
        return 0;
    }
    const std::size_t header_limit = 64 + std::size_t{data[1]} * 8;
    const std::uint64_t body_limit = 256;
    const std::string_view all(reinterpret_cast<const char*>(data) + 2, size - 2);
    const std::string_view first = all.substr(0, data[0] == 0 ? all.size() : data[0]);
    request_reader reader(header_limit, body_limit);
    const auto got = testing::read_with(reader, first);
    if (!reader.read_in_one_pass()) {
        return 0;  // the parser's own reading, nothing to compare
    }
    if (got != testing::read_by_parser(first, header_limit, body_limit)) {
        std::abort();
    }
    return 0;
}
