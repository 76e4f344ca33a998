// The relay's two readers of a backend's answer on any bytes: where relay_reader reads a head
// in one pass, what it makes of the answer must be what relay_response_parser (Beast's
// parser) makes of it (the client's head it writes, status, length, keep-alive, body, bytes
// used, outcome, what a close mid-answer leaves); a difference aborts. The first four bytes
// say how the rest arrive: how many at first (0: all at once), how many each time after (0:
// all the rest; the low bit: eager from the start), the client's HTTP version (odd: 1.0), and
// the size of the lent buffers.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "support/answer_reading.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace stagegate::proxy;
    if (size < 4) {
        return 0;
    }
    const testing::delivery how{data[0], std::size_t{data[1]} >> 1, true, (data[1] & 1) != 0};
    const unsigned client_version = (data[2] & 1) != 0 ? 10 : 11;
    const std::size_t buffer_size = 1 + data[3];
    constexpr std::size_t header_limit = 1024;
    const std::string_view bytes(reinterpret_cast<const char*>(data) + 4, size - 4);
    // The reader decides on the first bytes it gets; an answer it leaves to the parser is the
    // parser's own reading, nothing to compare (and Beast 1.81's chunk parser asserts, in
    // builds with assertions, on some deliveries in pieces: see fuzz_request_head).
    {
        std::string head;
        relay_reader probe(head, client_version, false, header_limit);
        boost::system::error_code ec;
        const std::size_t first = how.first == 0 ? bytes.size() : std::min(how.first, bytes.size());
        probe.put(boost::asio::buffer(bytes.data(), first), ec);
        if (!probe.read_in_one_pass()) {
            return 0;
        }
    }
    const auto [got, one_pass] = testing::read_answer_by_reader(bytes, client_version, false,
                                                                header_limit, how, buffer_size);
    if (!one_pass || got != testing::read_answer_by_parser(bytes, client_version, false,
                                                           header_limit, how, buffer_size)) {
        std::abort();
    }
    return 0;
}
