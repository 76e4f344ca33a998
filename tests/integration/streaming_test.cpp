// Streamed answers over real sockets: the gateway relays every piece of an answer as it
// leaves the backend (head first, then each read), whatever the body's framing. Each test
// moves in lockstep with a backend it drives byte by byte: the backend sends a piece only
// after the client has received the previous one, so a relay that holds bytes back fails
// (the client's read times out) instead of passing slowly.
#include "support/raw_backend.hpp"
#include "support/stack.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>

namespace stagegate::test {
namespace {

const std::string stream_request =
    "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    "Content-Length: 15\r\n\r\n{\"stream\":true}";

stack stack_on(raw_backend& backend) {
    return stack::make(0, 1, [&](config::gateway& c) {
        c.models[0].versions[0].endpoints = {{"127.0.0.1", backend.port()}};
    });
}

TEST(Streaming, SseEventsReachTheClientOneByOneAsTheBackendSendsThem) {
    raw_backend backend;
    auto s = stack_on(backend);
    connection c(s.port);
    ASSERT_TRUE(c.write_raw(stream_request));
    ASSERT_TRUE(backend.read_request());
    // The head alone: the client has it before the first event exists.
    ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"));
    const auto head = c.read_until("\r\n\r\n");
    ASSERT_NE(head.find("HTTP/1.1 200 OK"), std::string::npos) << head;
    EXPECT_NE(head.find("X-Stagegate-Version: v1"), std::string::npos) << head;
    EXPECT_NE(head.find("Transfer-Encoding: chunked"), std::string::npos) << head;
    for (int i = 1; i <= 5; ++i) {
        const std::string event = "data: {\"token\":" + std::to_string(i) + "}\n\n";
        ASSERT_TRUE(backend.send(raw_backend::chunk(event)));
        const auto got = c.read_until(event);
        ASSERT_NE(got.find(event), std::string::npos) << "event " << i << " held back: " << got;
    }
    ASSERT_TRUE(backend.send(raw_backend::chunk("data: [DONE]\n\n") + "0\r\n\r\n"));
    const auto end = c.read_until("0\r\n\r\n");
    EXPECT_NE(end.find("data: [DONE]"), std::string::npos) << end;
    EXPECT_NE(end.find("0\r\n\r\n"), std::string::npos) << end;
    // The connection is still good for the next request.
    ASSERT_TRUE(c.write_raw(stream_request));
    ASSERT_TRUE(backend.read_request());
    ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
    auto next = c.read_reply();
    EXPECT_EQ(next.status, 200u) << next.error;
    EXPECT_EQ(next.body, "{}");
}

TEST(Streaming, ABodyWithALengthIsRelayedPieceByPiece) {
    raw_backend backend;
    auto s = stack_on(backend);
    connection c(s.port);
    ASSERT_TRUE(c.write_raw(stream_request));
    ASSERT_TRUE(backend.read_request());
    ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nfirst-"));
    const auto first = c.read_until("first-");
    ASSERT_NE(first.find("first-"), std::string::npos) << first;
    EXPECT_NE(first.find("Content-Length: 12"), std::string::npos) << first;
    ASSERT_TRUE(backend.send("second"));
    const auto second = c.read_until("second");
    EXPECT_NE(second.find("second"), std::string::npos) << second;
}

TEST(Streaming, ACloseDelimitedBodyIsRelayedAsChunksAndEndsWithTheBackendsClose) {
    raw_backend backend;
    auto s = stack_on(backend);
    connection c(s.port);
    ASSERT_TRUE(c.write_raw(stream_request));
    ASSERT_TRUE(backend.read_request());
    ASSERT_TRUE(backend.send("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"));
    const auto head = c.read_until("\r\n\r\n");
    ASSERT_NE(head.find("Transfer-Encoding: chunked"), std::string::npos) << head;
    ASSERT_TRUE(backend.send("piece-one"));
    const auto one = c.read_until("piece-one\r\n");
    ASSERT_NE(one.find("9\r\npiece-one\r\n"), std::string::npos) << one;
    backend.close();
    const auto end = c.read_until("0\r\n\r\n");
    EXPECT_NE(end.find("0\r\n\r\n"), std::string::npos) << end;
}

}  // namespace
}  // namespace stagegate::test
