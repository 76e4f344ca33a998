// The request path's two readers on any bytes: where request_reader reads a head in one pass,
// what it makes of the request must be what Beast's parser makes of it (request line, fields,
// length, keep-alive, body, bytes used, outcome, what a close mid-request leaves); a
// difference aborts. The first three bytes say how the rest arrive: how many at first (the
// head may come in pieces; 0: all at once), how many each time after (0: all the rest; the
// low bit: eager from the start), and the head limit.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "support/request_reading.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace stagegate::proxy;
    if (size < 3) {
        return 0;
    }
    const testing::delivery how{data[0], std::size_t{data[1]} >> 1, true, (data[1] & 1) != 0};
    const std::size_t header_limit = 64 + std::size_t{data[2]} * 8;
    const std::uint64_t body_limit = 256;
    const std::string_view bytes(reinterpret_cast<const char*>(data) + 3, size - 3);
    // The reader decides on the first bytes it gets; a head it leaves to the parser is the
    // parser's own reading, nothing to compare. (Not read on: Beast 1.81's parser asserts,
    // in builds with assertions, when a chunked body's last-chunk line came alone and one
    // byte more follows: its `n >= 5` in parse_chunk_header. Release builds define NDEBUG.)
    {
        request_reader probe(header_limit, body_limit);
        boost::system::error_code ec;
        const std::size_t first = how.first == 0 ? bytes.size() : std::min(how.first, bytes.size());
        probe.put(boost::asio::buffer(bytes.data(), first), ec);
        if (!probe.read_in_one_pass()) {
            return 0;
        }
    }
    request_reader reader(header_limit, body_limit);
    const auto got = testing::read_with(reader, bytes, how);
    if (got != testing::read_by_parser(bytes, header_limit, body_limit, how)) {
        std::abort();
    }
    return 0;
}
