// Streamed answers over real sockets: the gateway relays every piece of an answer as it
// leaves the backend (head first, then each read), whatever the body's framing. Each test
// moves in lockstep with a backend it drives byte by byte: the backend sends a piece only
// after the client has received the previous one, so a relay that holds bytes back fails
// (the client's read times out) instead of passing slowly.
#include "support/raw_backend.hpp"
#include "support/stack.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <numeric>
#include <thread>

namespace stagegate::test {
namespace {

const std::string stream_request =
    "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    "Content-Length: 15\r\n\r\n{\"stream\":true}";

stack stack_on(raw_backend& backend, config::model_timeouts timeouts = {}) {
    return stack::make(0, 1, [&](config::gateway& c) {
        c.models[0].versions[0].endpoints = {{"127.0.0.1", backend.port()}};
        c.models[0].timeouts = timeouts;
    });
}

const std::string stream_head =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

std::string event(int i) { return "data: {\"token\":" + std::to_string(i) + "}\n\n"; }

// v1's counts once its worker has recorded `requests` answers.
metrics::series_counts v1_counts(app::gateway& gw, std::uint64_t requests) {
    metrics::series_counts counts;
    wait_until([&] {
        for (const auto& m : gw.read_metrics()) {
            if (m.version == "v1") {
                counts = m.since_stage_start;
            }
        }
        return counts.requests() >= requests;
    });
    return counts;
}

// The client asks for a stream; the backend answers its head and a first event, which
// reaches the client.
testing::AssertionResult stream_started(raw_backend& backend, connection& c) {
    if (!c.write_raw(stream_request) || !backend.read_request() ||
        !backend.send(stream_head + raw_backend::chunk(event(1)))) {
        return testing::AssertionFailure() << "the request or the head did not go through";
    }
    const auto first = c.read_until(event(1));
    if (first.find(event(1)) == std::string::npos) {
        return testing::AssertionFailure() << "the first event never arrived: " << first;
    }
    return testing::AssertionSuccess();
}

// Scaled down from the defaults (first byte 30 s, stream idle 60 s, no total cap).
config::model_timeouts stream_timeouts() {
    config::model_timeouts t;
    t.first_byte = std::chrono::milliseconds(2000);
    t.stream_idle = std::chrono::milliseconds(400);
    t.total = std::chrono::milliseconds(0);
    return t;
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

// The stream idle timeout bounds the gap between two reads, not the answer's length: a stream
// that keeps moving lasts as long as it moves (here 4x the idle timeout, without a total
// cap), and is counted as a success.
TEST(StreamTimeouts, AStreamThatKeepsMovingRunsPastTheIdleTimeout) {
    raw_backend backend;
    auto s = stack_on(backend, stream_timeouts());
    connection c(s.port);
    ASSERT_TRUE(c.write_raw(stream_request));
    ASSERT_TRUE(backend.read_request());
    ASSERT_TRUE(backend.send(stream_head));
    const auto started = std::chrono::steady_clock::now();
    for (int i = 1; i <= 16; ++i) {
        // The pace of a slow model (a token every 100 ms), not a synchronisation.
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        ASSERT_TRUE(backend.send(raw_backend::chunk(event(i))));
        const auto got = c.read_until(event(i));
        ASSERT_NE(got.find(event(i)), std::string::npos) << "event " << i << ": " << got;
    }
    ASSERT_TRUE(backend.send(raw_backend::chunk("data: [DONE]\n\n") + "0\r\n\r\n"));
    const auto end = c.read_until("0\r\n\r\n");
    EXPECT_NE(end.find("data: [DONE]"), std::string::npos) << end;
    EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(1600));
    const auto counts = v1_counts(*s.gateway, 1);
    EXPECT_EQ(counts.codes[metrics::code_slot(200)], 1u);
    EXPECT_EQ(counts.cut_short, 0u);
    EXPECT_EQ(counts.server_errors(), 0u);
}

// A stream that stalls past the idle timeout is cut: the client, which already has the 200,
// sees the connection close before the body's end (no last chunk), and the version is
// charged a failure (a timeout, and an answer cut short) although its status was 200.
TEST(StreamTimeouts, AStreamThatStallsIsCutAndCountedAsAFailure) {
    raw_backend backend;
    auto s = stack_on(backend, stream_timeouts());
    connection c(s.port);
    ASSERT_TRUE(stream_started(backend, c));
    // The backend says nothing more: the gateway must end the answer on its own.
    const auto rest = c.read_until("0\r\n\r\n");
    EXPECT_EQ(rest.find("0\r\n\r\n"), std::string::npos) << "a cut stream must not look complete";
    EXPECT_TRUE(c.peer_closed());
    const auto counts = v1_counts(*s.gateway, 1);
    EXPECT_EQ(counts.codes[metrics::code_slot(200)], 1u);
    EXPECT_EQ(counts.cut_short, 1u);
    EXPECT_EQ(counts.server_errors(), 1u);
    EXPECT_EQ(counts.upstream_failures[static_cast<std::size_t>(metrics::upstream_failure::timeout)],
              1u);
    EXPECT_EQ(counts.success_latency.count(), 0u);
    // The gates' per-unit counts see it too.
    EXPECT_EQ(std::accumulate(counts.units.server_errors.begin(), counts.units.server_errors.end(),
                              std::uint64_t{0}),
              1u);
}

// A backend that closes mid-stream fails its answer the same way (a reset, cut short).
TEST(StreamTimeouts, ABackendThatClosesMidStreamIsCountedAsAFailure) {
    raw_backend backend;
    auto s = stack_on(backend, stream_timeouts());
    connection c(s.port);
    ASSERT_TRUE(stream_started(backend, c));
    backend.close();
    EXPECT_TRUE(c.peer_closed());
    const auto counts = v1_counts(*s.gateway, 1);
    EXPECT_EQ(counts.cut_short, 1u);
    EXPECT_EQ(counts.server_errors(), 1u);
    EXPECT_EQ(counts.upstream_failures[static_cast<std::size_t>(metrics::upstream_failure::reset)],
              1u);
}

}  // namespace
}  // namespace stagegate::test
