#include "proxy/relay_reader.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "support/answer_reading.hpp"

namespace stagegate::proxy {
namespace {

using testing::delivery;
using testing::read_answer_by_parser;
using testing::read_answer_by_reader;

constexpr std::size_t answer_head_limit = 8192;

// Answers as backends send them: the mock model, nginx, Triton, an HTTP/1.0 server keeping
// the connection, an error with a body, an encoded one, an event stream of known length, the
// gateway's own stamps (dropped), blanks around values, an empty reason.
const std::vector<std::string> common_answers = {
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n"
    "X-Model-Version: v1\r\n\r\n{\"predictions\":[[1.0,2.0]]}",
    "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 15:00:00 GMT\r\n"
    "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}",
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n0123456789",
    "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc",
    "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy!",
    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b\x08\x00",
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nContent-Length: 12\r\n"
    "\r\ndata: {}\n\n\n\n",
    "HTTP/1.1 200 OK\r\nX-Stagegate-Version: forged\r\nx-request-id: forged\r\nContent-Length: "
    "1\r\n"
    "X-A:  \t spaced \t\r\nX-Empty:\r\n\r\nx",
    "HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx",
    "HTTP/1.1 299 A  reason\twith blanks \r\nContent-Length: 1\r\nContent-Encoding: "
    "identity\r\n\r\nx",
};

void expect_same(std::string_view bytes, unsigned client_version, delivery how,
                 std::size_t buffer_size, bool one_pass_expected) {
    auto [got, one_pass] =
        read_answer_by_reader(bytes, client_version, false, answer_head_limit, how, buffer_size);
    EXPECT_EQ(one_pass, one_pass_expected) << bytes;
    const auto expected =
        read_answer_by_parser(bytes, client_version, false, answer_head_limit, how, buffer_size);
    EXPECT_EQ(got, expected) << bytes << "\nhead one pass: " << got.head
                             << "\nhead parser: " << expected.head;
}

// The one pass takes the common answers, and what it makes of them is what the parser makes:
// the client's head, status, length, keep-alive, body, bytes used; for HTTP/1.1 and 1.0
// clients; the body in buffers of any size, arriving whole, byte by byte, or cut short.
TEST(RelayReader, ReadsCommonAnswersInOnePassAsTheParserReadsThem) {
    for (const auto& bytes : common_answers) {
        for (const unsigned client : {11u, 10u}) {
            expect_same(bytes, client, {}, 4096, true);
            expect_same(bytes, client, {}, 3, true);
            expect_same(bytes + "HTTP/1.1 200 OK\r\n", client, {}, 64, true);  // bytes after it
            const auto head_size = bytes.find("\r\n\r\n") + 4;
            expect_same(bytes, client, {head_size, 1, false}, 5, true);
            expect_same(bytes, client, {0, 0, false, true}, 7, true);  // eager from the start
            expect_same(bytes, client, {head_size / 2, 3, true}, 64, false);  // head in pieces
            if (head_size < bytes.size()) {
                const auto cut = bytes.substr(0, bytes.size() - 1);
                expect_same(cut, client, {head_size, 2, false}, 64, true);
                expect_same(cut, client, {head_size, 2, true}, 64, true);
            }
        }
    }
    std::string head;
    relay_reader r(head, 11, false, answer_head_limit);
    boost::system::error_code ec;
    const auto& bytes = common_answers[9];
    const auto used = r.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
    ASSERT_TRUE(r.read_in_one_pass());
    EXPECT_EQ(used, bytes.find("\r\n\r\n") + 4);
    // The stamps and the framing are the gateway's to write; the rest as sent.
    EXPECT_EQ(head, "HTTP/1.1 200 OK\r\nX-A: spaced\r\nX-Empty: \r\n");
    EXPECT_EQ(r.content_length(), 1u);
}

// Every other answer is read by the parser from its first byte, and the answer is the
// parser's: other framings, bodiless statuses, the answer to HEAD, refusals, heads in pieces
// or past the limit.
TEST(RelayReader, LeavesEveryOtherAnswerToTheParser) {
    const std::vector<std::string> others = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
        "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        "HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nx",
        "HTTP/1.1 200 \xc3\x89t\xc3\xa9\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\nContent-Length: 1\n\nx",
        "HTTP/1.1 200OK\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 600 Odd\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 20 Short\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/2.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
        "http/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n",  // not whole yet
        "HTTP/1.1 200 OK\r\nX-Long: " + std::string(answer_head_limit, 'v') +
            "\r\nContent-Length: 1\r\n\r\nx",
    };
    for (const auto& bytes : others) {
        expect_same(bytes, 11, {0, 0, true}, 64, false);
    }
    // A head of the limit exactly is the one pass's; one byte more, the parser's (which gives
    // the fields their own window after the status line).
    std::string at_limit = "HTTP/1.1 200 OK\r\nX: \r\nContent-Length: 1\r\n\r\nx";
    at_limit.insert(20, answer_head_limit - (at_limit.size() - 1), 'v');
    ASSERT_EQ(at_limit.find("\r\n\r\n") + 4, answer_head_limit);
    expect_same(at_limit, 11, {0, 0, true}, 64, true);
    expect_same(at_limit.substr(0, 20) + "v" + at_limit.substr(20), 11, {0, 0, true}, 64, false);
    expect_same(at_limit.substr(0, 20) + "v" + at_limit.substr(20), 11, {0, 0, false}, 64, false);
    // Up to 32 fields are the one pass's (it holds them before it writes any); one more, the
    // parser's.
    const auto with_fields = [](int count) {
        std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n";
        for (int i = 1; i < count; ++i) {
            answer += "X-F" + std::to_string(i) + ": " + std::to_string(i) + "\r\n";
        }
        return answer + "\r\nx";
    };
    expect_same(with_fields(32), 11, {0, 0, true}, 64, true);
    expect_same(with_fields(33), 11, {0, 0, true}, 64, false);
    // The answer to HEAD: its length describes a body that does not follow.
    const std::string_view head_answer = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    auto [got, one_pass] = read_answer_by_reader(head_answer, 11, true, answer_head_limit, {}, 64);
    EXPECT_FALSE(one_pass);
    EXPECT_EQ(got, read_answer_by_parser(head_answer, 11, true, answer_head_limit, {}, 64));
    EXPECT_TRUE(got.done);
}

// The two agree on answers near the common ones: 100,000 of them, each a common answer with a
// few bytes replaced, inserted or removed. Deterministic (a fixed seed); fuzz_answer_head does
// the same on any bytes.
TEST(RelayReader, AgreesWithTheParserOnMutatedAnswers) {
    std::mt19937_64 random(35);
    std::size_t one_pass_count = 0;
    for (int round = 0; round < 100000; ++round) {
        std::string bytes = common_answers[random() % common_answers.size()];
        testing::mutate(random, bytes);
        const delivery how{0, 0, round % 2 == 0};
        const unsigned client = round % 3 == 0 ? 10 : 11;
        auto [got, one_pass] =
            read_answer_by_reader(bytes, client, false, answer_head_limit, how, 16);
        one_pass_count += one_pass;
        if (got != read_answer_by_parser(bytes, client, false, answer_head_limit, how, 16)) {
            ADD_FAILURE() << "the reader and the parser differ (one pass: " << one_pass << ") on:\n"
                          << bytes;
            break;
        }
    }
    EXPECT_GT(one_pass_count, 10000u);
    EXPECT_LT(one_pass_count, 95000u);
}

}  // namespace
}  // namespace stagegate::proxy
