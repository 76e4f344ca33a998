// The exchange core over in-memory streams (Beast's test::stream): what the client receives,
// when it receives it, and what the exchange reports, for the body framings and failures a
// backend can produce. The io_context is polled (run until nothing is ready) between the
// backend's writes, so "the client already has this" is checked without sleeping.
#include "proxy/exchange.hpp"

#include "memory_client.hpp"

#include <gtest/gtest.h>

#include <boost/asio/write.hpp>

#include <optional>
#include <string>

namespace stagegate::proxy {
namespace {

// The upstream side as the exchange sees it, over a memory stream; remembers how it ended.
struct memory_upstream {
    memory_stream& stream;
    beast::flat_buffer& read_buffer;
    const routing::upstream_endpoint& where;
    std::optional<bool>& ended_reusable;

    beast::flat_buffer& buffer() { return read_buffer; }
    const routing::upstream_endpoint& endpoint() const { return where; }
    void begin() {}
    void end(bool reusable) { ended_reusable = reusable; }
};

class Exchange : public MemoryClientTest {
protected:
    std::shared_ptr<const routing::route_snapshot> routes = one_model_snapshot();
    // The exchange reads from `up`, the test plays the backend on `backend`.
    memory_stream up{io};
    memory_stream backend{io};
    beast::flat_buffer up_buffer;
    std::string head = "POST /v1/models/m:predict HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\n\r\n";
    std::string request_body = "{}";
    std::string captured;
    body_capture capture{captured, 1024};
    std::optional<exchange_outcome> outcome;
    std::optional<bool> ended_reusable;
    openai_stream stream_end = openai_stream::none;

    Exchange() : MemoryClientTest("rid-1") { up.connect(backend); }
    ~Exchange() override {
        backend.close();
        finish();  // while `up` and `backend` still exist
    }

    template <class Down>
    void start(Down& to) {
        const auto& model = routes->models[0];
        exchange_args args{head, request_body, rc, w, slot, model, model.versions[0], &capture,
                           stream_end};
        // Captureless, so the coroutine frame holds copies of everything it uses.
        auto run = [](Exchange& t, Down& sink, exchange_args copied) -> task<void> {
            exchange_outcome out;
            co_await exchange(
                sink,
                memory_upstream{t.up, t.up_buffer, t.routes->models[0].versions[0].endpoints[0],
                                t.ended_reusable},
                copied, out);
            t.outcome = std::move(out);
        };
        spawn(run(*this, to, args));
    }
    void start() { start(down); }
    void backend_sends(std::string_view bytes) {
        net::write(backend, net::buffer(bytes.data(), bytes.size()));
        settle();
    }
    void backend_closes() {
        backend.close();
        settle();
    }
    std::string backend_got() const { return std::string(backend.str()); }
};

TEST_F(Exchange, SendsTheRequestAndStampsTheAnswer) {
    const std::string request_bytes = head + request_body;  // `head` is reused for the answer
    start();
    EXPECT_EQ(backend_got(), request_bytes);
    EXPECT_FALSE(outcome);  // waiting for the answer
    backend_sends(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
        "Keep-Alive: timeout=5\r\nX-Model: yes\r\n\r\nok");
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::done_keep_alive);
    EXPECT_EQ(outcome->status, http::status::ok);
    EXPECT_TRUE(outcome->reusable);
    EXPECT_EQ(ended_reusable, true);
    EXPECT_EQ(client_got(),
              "HTTP/1.1 200 OK\r\nX-Model: yes\r\nContent-Length: 2\r\n"
              "X-Stagegate-Version: v1\r\nX-Stagegate-Stage: canary\r\nX-Request-Id: rid-1\r\n"
              "\r\nok");
    EXPECT_EQ(captured, "ok");
    EXPECT_TRUE(capture.complete);
}

// A start line that cannot become a status line is a 502 as soon as it is read, not after
// the first-byte timeout (the parser judged it only once it had a whole head).
TEST_F(Exchange, AGarbageStatusLineIsA502AtOnce) {
    start();
    backend_sends("FOO\r\n");
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::failed_before_response);
    EXPECT_EQ(outcome->status, http::status::bad_gateway);
    EXPECT_EQ(outcome->problem.code, "upstream_protocol_error");
    EXPECT_EQ(outcome->failure, metrics::upstream_failure::protocol);
    EXPECT_EQ(ended_reusable, false);
    EXPECT_EQ(client_got(), "");
}

// A good one may come in pieces of any size.
TEST_F(Exchange, AStatusLineInPiecesIsStillRead) {
    start();
    for (std::string_view piece : {"H", "TTP/1.", "1 2", "00 O", "K\r", "\nContent-Length: 2\r\n",
                                   "\r\nok"}) {
        EXPECT_FALSE(outcome) << piece;
        backend_sends(piece);
    }
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->status, http::status::ok);
    EXPECT_EQ(client_body(), "ok");
    EXPECT_EQ(ended_reusable, true);
}

TEST_F(Exchange, ChunkedBodyIsRelayedPieceByPiece) {
    start();
    backend_sends("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    // No body came with the head: the client has the head alone already.
    EXPECT_NE(client_got().find("Transfer-Encoding: chunked\r\n"), std::string::npos);
    EXPECT_EQ(client_body(), "");
    backend_sends("5\r\nhello\r\n");
    EXPECT_EQ(client_body(), "5\r\nhello\r\n");
    // Part of a chunk goes out before the rest of it arrives, and a chunk's end goes out
    // without waiting for the next size line.
    backend_sends("6\r\n w");
    EXPECT_EQ(client_body(), "5\r\nhello\r\n2\r\n w\r\n");
    backend_sends("orld\r\n");
    EXPECT_EQ(client_body(), "5\r\nhello\r\n2\r\n w\r\n4\r\norld\r\n");
    EXPECT_FALSE(outcome);
    backend_sends("0\r\n\r\n");
    EXPECT_EQ(client_body(), "5\r\nhello\r\n2\r\n w\r\n4\r\norld\r\n0\r\n\r\n");
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::done_keep_alive);
    EXPECT_TRUE(outcome->reusable);
    EXPECT_EQ(captured, "hello world");
}

TEST_F(Exchange, ContentLengthBodyArrivingInPiecesGoesOutAsItComes) {
    start();
    backend_sends("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
    EXPECT_NE(client_got().find("Content-Length: 10\r\n"), std::string::npos);
    EXPECT_EQ(client_body(), "hello");
    EXPECT_FALSE(outcome);
    backend_sends("wor");
    EXPECT_EQ(client_body(), "hellowor");
    backend_sends("ld");
    EXPECT_EQ(client_body(), "helloworld");
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::done_keep_alive);
    EXPECT_TRUE(outcome->reusable);
}

TEST_F(Exchange, CloseDelimitedBodyIsChunkedForHttp11Clients) {
    start();
    backend_sends("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc");
    EXPECT_NE(client_got().find("Transfer-Encoding: chunked\r\n"), std::string::npos);
    EXPECT_EQ(client_body(), "3\r\nabc\r\n");
    backend_closes();
    EXPECT_EQ(client_body(), "3\r\nabc\r\n0\r\n\r\n");
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::done_keep_alive);  // the client's may stay
    EXPECT_FALSE(outcome->reusable);                               // the backend's may not
    EXPECT_EQ(ended_reusable, false);
    EXPECT_EQ(captured, "abc");
    EXPECT_TRUE(capture.complete);
}

TEST_F(Exchange, CloseDelimitedBodyToHttp10ClientEndsItsConnection) {
    rc.client_version = 10;
    start();
    backend_sends("HTTP/1.1 200 OK\r\n\r\nabc");
    EXPECT_EQ(client_got().find("Transfer-Encoding"), std::string::npos);
    EXPECT_EQ(client_got().find("Connection: keep-alive"), std::string::npos);
    EXPECT_EQ(client_body(), "abc");
    backend_closes();
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::done_close);
    EXPECT_EQ(client_body(), "abc");
}

TEST_F(Exchange, UpstreamCutMidBodyCutsTheClientShort) {
    start();
    backend_sends("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
    backend_closes();
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::done_close);
    EXPECT_EQ(outcome->failure, metrics::upstream_failure::reset);
    EXPECT_FALSE(outcome->reusable);
    EXPECT_EQ(ended_reusable, false);
    EXPECT_EQ(client_body(), "hello");  // nothing added: the client sees a short body
    EXPECT_FALSE(capture.complete);
}

TEST_F(Exchange, AnOpenAiStreamWithoutItsEndEventIsCutShortThoughItsFramingEnded) {
    stream_end = openai_stream::chat;
    start();
    backend_sends("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n");
    backend_sends("f\r\ndata: {\"a\":1}\n\n\r\n");
    EXPECT_EQ(client_body(), "f\r\ndata: {\"a\":1}\n\n\r\n");  // relayed as it came
    backend_sends("0\r\n\r\n");  // the backend gave up and ended its body cleanly
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->status, http::status::ok);
    EXPECT_TRUE(outcome->cut_short);
    EXPECT_FALSE(outcome->failure);  // not a transport failure: the connection is fine
    EXPECT_TRUE(outcome->reusable);
}

// An open stream waiting for its next event holds no relay buffer (#19: memory per open
// stream); one is lent for each read's bytes until the client has them.
TEST_F(Exchange, AStreamBetweenTwoEventsHoldsNoRelayBuffer) {
    stream_end = openai_stream::chat;
    start();
    backend_sends("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n");
    EXPECT_EQ(w.pool().relay_buffers_lent(), 0u);
    backend_sends("f\r\ndata: {\"a\":1}\n\n\r\n");
    EXPECT_EQ(client_body(), "f\r\ndata: {\"a\":1}\n\n\r\n");
    EXPECT_EQ(w.pool().relay_buffers_lent(), 0u);
    backend_sends("e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
    ASSERT_TRUE(outcome);
    EXPECT_FALSE(outcome->cut_short);
    EXPECT_EQ(w.pool().relay_buffers_lent(), 0u);
}

TEST_F(Exchange, AnOpenAiStreamEndingWithDoneIsWhole) {
    stream_end = openai_stream::chat;
    start();
    backend_sends("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                  "Content-Length: 29\r\n\r\ndata: {\"a\":1}\n\ndata: [DONE]\n\n");
    ASSERT_TRUE(outcome);
    EXPECT_FALSE(outcome->cut_short);
}

TEST_F(Exchange, AnOpenAiAnswerThatDoesNotStreamIsNotWatched) {
    stream_end = openai_stream::chat;
    start();
    backend_sends("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  "Content-Length: 2\r\n\r\n{}");
    ASSERT_TRUE(outcome);
    EXPECT_FALSE(outcome->cut_short);
}

TEST_F(Exchange, UpstreamCutBeforeTheHeadIsAnAnswerableFailure) {
    start();
    backend_sends("HTTP/1.1 200 O");
    backend_closes();
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::failed_before_response);
    EXPECT_EQ(outcome->status, http::status::bad_gateway);
    EXPECT_EQ(outcome->problem.status, http::status::bad_gateway);
    EXPECT_EQ(outcome->problem.code, "upstream_reset");
    EXPECT_EQ(outcome->problem.message.rfind("reading the response header from version v1 at "
                                             "127.0.0.1:9001: ",
                                             0),
              0u)
        << outcome->problem.message;
    EXPECT_EQ(outcome->failure, metrics::upstream_failure::reset);
    EXPECT_FALSE(outcome->nothing_sent);
    EXPECT_EQ(client_got(), "");
}

TEST_F(Exchange, GarbageFromTheBackendIsAProtocolError) {
    start();
    backend_sends("SSH-2.0-OpenSSH\r\n\r\n");
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::failed_before_response);
    EXPECT_EQ(outcome->problem.code, "upstream_protocol_error");
    EXPECT_EQ(outcome->failure, metrics::upstream_failure::protocol);
    EXPECT_EQ(client_got(), "");
}

TEST_F(Exchange, RequestNotWrittenAtAllMayBeRetried) {
    up.close();  // the connection was dead before we wrote (a write fails at once)
    start();
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::failed_before_response);
    EXPECT_TRUE(outcome->nothing_sent);
}

TEST_F(Exchange, InterimAnswersAreNotRelayed) {
    start();
    backend_sends("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    ASSERT_TRUE(outcome);
    EXPECT_EQ(client_got().rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << client_got();
    EXPECT_EQ(client_got().find("100 Continue"), std::string::npos);
    EXPECT_EQ(client_body(), "ok");
}

TEST_F(Exchange, NoBodyAnswersEndAtTheirHead) {
    for (std::string_view status : {"204 No Content", "304 Not Modified"}) {
        outcome.reset();
        client.clear();
        backend.clear();
        head = "GET /v1/models/m HTTP/1.1\r\nHost: b\r\n\r\n";
        request_body.clear();
        start();
        backend_sends("HTTP/1.1 " + std::string(status) + "\r\nX-A: 1\r\n\r\n");
        ASSERT_TRUE(outcome) << status;
        EXPECT_EQ(outcome->result, exchange_result::done_keep_alive) << status;
        EXPECT_TRUE(outcome->reusable) << status;
        EXPECT_EQ(client_got().find("Transfer-Encoding"), std::string::npos) << client_got();
        EXPECT_EQ(client_got().find("Content-Length"), std::string::npos) << client_got();
        EXPECT_EQ(client_body(), "") << status;
    }
}

TEST_F(Exchange, HeadAnswerKeepsItsContentLengthAndHasNoBody) {
    rc.head = true;
    start();
    backend_sends("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n");
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::done_keep_alive);
    EXPECT_TRUE(outcome->reusable);
    EXPECT_NE(client_got().find("Content-Length: 42\r\n"), std::string::npos) << client_got();
    EXPECT_EQ(client_body(), "");
}

TEST_F(Exchange, ClientGoneMidBodyLeavesTheConnectionUnused) {
    start();
    backend_sends("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    down.close();  // the client went away: writing to it fails
    backend_sends("hello");
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::done_close);
    EXPECT_FALSE(outcome->failure);  // the backend did nothing wrong
    EXPECT_EQ(ended_reusable, false);
}

// The mirror's downstream: nothing is written anywhere, the body is still captured, and a
// failure at any point is one before the answer (no client saw any of it).
TEST_F(Exchange, DiscardSinkCapturesTheBodyAndWritesNothing) {
    discard_sink nobody;
    start(nobody);
    backend_sends("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n");
    backend_sends("2\r\n\"}\r\n0\r\n\r\n");
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->status, http::status::ok);
    EXPECT_TRUE(outcome->reusable);
    EXPECT_EQ(captured, "{\"a\"}");
    EXPECT_TRUE(capture.complete);
    EXPECT_EQ(client_got(), "");
}

TEST_F(Exchange, DiscardSinkCutMidBodyCountsAsAFailedAnswer) {
    discard_sink nobody;
    start(nobody);
    backend_sends("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
    backend_closes();
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->result, exchange_result::failed_before_response);
    EXPECT_EQ(outcome->status, http::status::bad_gateway);
    EXPECT_EQ(outcome->failure, metrics::upstream_failure::reset);
    EXPECT_FALSE(capture.complete);
}

TEST_F(Exchange, CaptureSkipsEncodedAndErrorAnswers) {
    start();
    backend_sends("HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\nfail");
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->status, http::status::internal_server_error);
    EXPECT_FALSE(capture.wanted);
    EXPECT_EQ(captured, "");
    EXPECT_EQ(client_body(), "fail");  // relayed all the same
}

}  // namespace
}  // namespace stagegate::proxy
