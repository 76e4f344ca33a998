// HTTP/2 on the listeners, driven by real clients nobody here wrote: curl (--http2-prior-knowledge
// for h2c, --http2 over TLS by ALPN) and h2load (Debian's nghttp2-client) for many streams on
// one connection. Each stream is one request with everything HTTP/1.1 requests get: routing,
// the weighted split, version stamps, streaming relay, the gateway's own error answers.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "support/node_process.hpp"
#include "support/shell.hpp"
#include "support/stack.hpp"
#include "support/temp_dir.hpp"
#include "support/test_client.hpp"

namespace stagegate::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// How many times `needle` occurs in `text`.
std::size_t occurrences(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
        ++n;
    }
    return n;
}

bool have(const std::string& tool) {
    return run("sh -c 'command -v " + tool + "'").exit_code == 0;
}

std::string url(std::uint16_t port, const std::string& path, bool tls = false) {
    return std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port) + path;
}

// The body of curl -i's output (after the last head; curl prints one head per answer).
std::string body_of(const std::string& curl_output) {
    const auto at = curl_output.rfind("\r\n\r\n");
    return at == std::string::npos ? std::string() : curl_output.substr(at + 4);
}

class Http2 : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(have("curl")) << "curl is missing: scripts/install-deps.sh installs it";
        ASSERT_TRUE(have("h2load") && have("nghttp"))
            << "h2load or nghttp is missing: scripts/install-deps.sh installs nghttp2-client";
    }
};

TEST_F(Http2, PriorKnowledgeRequestIsRoutedStampedAndAnsweredOverHttp2) {
    auto s = stack::make();
    auto r =
        run("curl -sS -i --http2-prior-knowledge -H 'content-type: application/json' "
            "-H 'x-request-id: h2-abc' --data '" +
            predict_body + "' " + url(s.port, "/v1/models/m:predict"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("HTTP/2 200"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("x-stagegate-version: v1"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("x-stagegate-stage: canary"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("x-request-id: h2-abc"), std::string::npos) << r.output;
    // No HTTP/1.1 connection management leaks into HTTP/2 (RFC 9113 8.2.2).
    EXPECT_EQ(r.output.find("connection:"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("transfer-encoding:"), std::string::npos) << r.output;
    auto body = json::parse(body_of(r.output), nullptr, false);
    ASSERT_FALSE(body.is_discarded()) << r.output;
    EXPECT_EQ(body["model_version"], "v1");
    EXPECT_EQ(body["predictions"].size(), 1u);

    // The same port still speaks HTTP/1.1.
    auto h1 = request(s.port, "POST", "/v1/models/m:predict", predict_body);
    EXPECT_EQ(h1.status, 200u) << h1.error;
}

TEST_F(Http2, GatewayErrorsAndHeadAnswersAreProperHttp2Answers) {
    auto s = stack::make(0, 1, [](config::gateway& c) { c.limit.max_request_body_bytes = 1024; });
    auto missing = run("curl -sS -i --http2-prior-knowledge " +
                       url(s.port, "/v1/models/nope:predict") + " --data '{}'");
    ASSERT_EQ(missing.exit_code, 0) << missing.output;
    EXPECT_NE(missing.output.find("HTTP/2 404"), std::string::npos) << missing.output;
    EXPECT_NE(body_of(missing.output).find("\"unknown_model\""), std::string::npos)
        << missing.output;

    // A body over the limit is refused as it arrives, with 413, per stream: two such requests
    // on one connection both get theirs, and the connection is not torn down.
    const std::string big_file = ::testing::TempDir() + "/h2_big_body";
    std::ofstream(big_file) << std::string(4096, 'x');
    auto too_big = run("nghttp -nv -d " + big_file + " '" + url(s.port, "/v1/models/m:predict?a") +
                       "' '" + url(s.port, "/v1/models/m:predict?b") + "'");
    ASSERT_EQ(too_big.exit_code, 0) << too_big.output;
    const auto refused = occurrences(too_big.output, ":status: 413");
    EXPECT_EQ(refused, 2u) << too_big.output;
    EXPECT_EQ(too_big.output.find("recv GOAWAY"), std::string::npos) << too_big.output;

    auto head = run("curl -sS -I --http2-prior-knowledge " + url(s.port, "/v1/models"));
    ASSERT_EQ(head.exit_code, 0) << head.output;
    EXPECT_NE(head.output.find("HTTP/2 200"), std::string::npos) << head.output;
}

// 1,000 requests as 100 concurrent streams on one client connection are each answered, split
// between the versions by weight, and counted once each by the backends.
TEST_F(Http2, ConcurrentStreamsOnOneConnectionAreSplitByWeightAndAllAnswered) {
    auto s = stack::make(5000);
    const std::string body_file = ::testing::TempDir() + "/h2_predict_body.json";
    std::ofstream(body_file) << predict_body;
    auto r = run("h2load -n 1000 -c 1 -m 100 -d " + body_file +
                     " -H 'content-type: application/json' " + url(s.port, "/v1/models/m:predict"),
                 60);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("1000 total, 1000 started, 1000 done, 1000 succeeded"),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("status codes: 1000 2xx"), std::string::npos) << r.output;
    const auto v1 = s.v1->requests();
    const auto v2 = s.v2->requests();
    EXPECT_EQ(v1 + v2, 1000u);
    // Binomial(1000, 0.5): outside [380, 620] with probability below 1e-13.
    EXPECT_GE(v2, 380u);
    EXPECT_LE(v2, 620u);
}

// HPACK: the fields that repeat from answer to answer (content-type, the version stamps) are
// kept in the connection's dynamic table, while X-Request-Id, new on every answer, is sent
// never indexed: indexing it would evict the fields that do repeat and, in nghttp2's encoder,
// make every later request id a walk over a table full of earlier ones (about 8 % of a gRPC
// call's instructions; loadtest/grpc_instructions). nghttp -v marks a never-indexed field
// "sensitive".
TEST_F(Http2, RequestIdsAreSentNeverIndexedAndRepeatedFieldsStayIndexed) {
    auto s = stack::make();
    const std::string body_file = ::testing::TempDir() + "/h2_hpack_body.json";
    std::ofstream(body_file) << predict_body;
    std::string urls;
    for (int i = 0; i < 4; ++i) {
        urls += " '" + url(s.port, "/v1/models/m:predict?n=" + std::to_string(i)) + "'";
    }
    auto r = run("nghttp -nv -d " + body_file + " -H 'content-type: application/json'" + urls);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(occurrences(r.output, ":status: 200"), 4u) << r.output;
    EXPECT_EQ(occurrences(r.output, "sensitive) x-request-id: "), 4u) << r.output;
    EXPECT_EQ(occurrences(r.output, "x-request-id: "), 4u) << r.output;
    EXPECT_EQ(occurrences(r.output, "sensitive) x-stagegate-"), 0u) << r.output;
    EXPECT_EQ(occurrences(r.output, "sensitive) content-type"), 0u) << r.output;
}

// A client whose flow-control window holds the answer back: nghttp with 1 KiB stream and
// 4 KiB connection windows reads a 400 KB answer. The answer queues past its high mark, the
// exchange's write waits for the window and is released as the client reads. This crashed
// the worker (a stack overflow in Boost 1.81's any_completion_handler move assignment) until
// the parked write was swapped in; the answer arrives whole and the process goes on serving.
TEST_F(Http2, ALargeAnswerHeldBackByTheClientsWindowArrivesWhole) {
    auto s = stack::make();
    const std::string body_file = ::testing::TempDir() + "/h2_window_body.json";
    {
        std::ofstream out(body_file);
        out << R"({"instances":[)";
        for (int i = 0; i < 20000; ++i) {
            out << (i ? ",[1,2]" : "[1,2]");
        }
        out << "]}";
    }
    for (int round = 0; round < 2; ++round) {
        auto r = run("nghttp -w 10 -W 12 -d " + body_file +
                         " -H 'content-type: application/json' " +
                         url(s.port, "/v1/models/m:predict"),
                     60);
        ASSERT_EQ(r.exit_code, 0) << r.output.substr(0, 2000);
        auto answer = json::parse(r.output, nullptr, false);
        ASSERT_FALSE(answer.is_discarded()) << r.output.substr(0, 2000);
        EXPECT_EQ(answer["predictions"].size(), 20000u);
    }
    // A client that goes away while its answer's write is parked (a 15-byte window makes the
    // 400 KB take seconds; it is killed after 0.3): the parked write is released with an
    // error, and serving goes on.
    run("timeout -s KILL 0.3 nghttp -w 4 -W 5 -d " + body_file +
        " -H 'content-type: application/json' " + url(s.port, "/v1/models/m:predict"));
    auto after = request(s.port, "POST", "/v1/models/m:predict", predict_body);
    EXPECT_EQ(after.status, 200u) << after.error;
}

// A streamed answer reaches an HTTP/2 client event by event, not at its end.
TEST_F(Http2, StreamedAnswerIsRelayedAsItIsSent) {
    mockmodel::options llm;
    llm.ttft_ms = 20;
    llm.tokens_per_second = 10;  // 100 ms between tokens
    llm.answer_tokens = 6;
    auto s = stack::make(
        0, 1, [](config::gateway&) {}, {}, llm);
    const std::string cmd =
        "timeout 30 curl -sS -N --http2-prior-knowledge -H 'content-type: application/json' "
        "--data '{\"model\":\"m\",\"stream\":true,\"messages\":[]}' " +
        url(s.port, "/v1/chat/completions") + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    char line[4096];
    std::optional<std::chrono::steady_clock::time_point> first_event;
    int events = 0;
    std::string all;
    while (std::fgets(line, sizeof line, p)) {
        all += line;
        if (std::string_view(line).starts_with("data:")) {
            ++events;
            if (!first_event) {
                first_event = std::chrono::steady_clock::now();
            }
        }
    }
    const auto ended = std::chrono::steady_clock::now();
    ASSERT_EQ(::pclose(p), 0) << all;
    ASSERT_TRUE(first_event) << all;
    EXPECT_GE(events, 6) << all;
    EXPECT_NE(all.find("data: [DONE]"), std::string::npos) << all;
    // The backend spends 500 ms between its first and last token; a relay that held the
    // answer back would deliver them all at once.
    EXPECT_GE(ended - *first_event, 300ms) << all;
}

// A node:http2 server playing one version over h2c (tests/clients/h2_backend.mjs).
struct h2_backend {
    temp_dir dir;
    std::unique_ptr<node_process> process;
    std::uint16_t port = 0;

    explicit h2_backend(const std::string& version) {
        const std::string port_file = dir.path + "/port";
        process = std::make_unique<node_process>(std::vector<std::string>{
            clients_dir + "/h2_backend.mjs", "--version", version, "--port-file", port_file});
        port = read_port_file(port_file);
    }
};

// The value of field `name` (lowercase) in curl -i's output, or "" without one.
std::string field_of(const std::string& curl_output, const std::string& name) {
    const std::regex line("(^|\n)" + name + ": ([^\r\n]*)", std::regex::icase);
    std::smatch m;
    return std::regex_search(curl_output, m, line) ? m[2].str() : std::string();
}

// What an HTTP/2 backend answers reaches HTTP/2 clients (handed over in parts, never written as
// HTTP/1.1) and HTTP/1.1 clients (written as HTTP/1.1) alike: its status and fields, the
// length, the gateway's stamps; a HEAD answer's head and no body; a bodiless 204; a body
// without a length and its trailers (HTTP/2 clients get a trailing HEADERS frame, HTTP/1.1
// clients a chunked answer's trailer section); fields past the head's bound refused.
TEST_F(Http2, AnHttp2BackendsAnswersReachHttp2AndHttp11ClientsWhole) {
    h2_backend v1("v1");
    h2_backend v2("v2");
    ASSERT_NE(v1.port, 0);
    ASSERT_NE(v2.port, 0);
    app::gateway gw(h2c_stack_config(v1.port, v2.port, 0));
    ASSERT_TRUE(gw.start());
    const auto port = gw.ports()[0];
    const std::string predict = url(port, "/v1/models/m:predict");
    const std::string answer = R"({"version":"v1","method":"POST","path":"/v1/models/m:predict"})";
    for (const std::string client : {"--http2-prior-knowledge", "--http1.1"}) {
        SCOPED_TRACE(client);
        const auto post =
            run("curl -sS -i " + client + " -H 'x-request-id: rid-7' --data '{}' " + predict);
        ASSERT_EQ(post.exit_code, 0) << post.output;
        EXPECT_EQ(post.output.rfind(client == "--http1.1" ? "HTTP/1.1 200" : "HTTP/2 200", 0), 0u)
            << post.output;
        EXPECT_EQ(field_of(post.output, "x-backend"), "v1") << post.output;
        EXPECT_EQ(field_of(post.output, "content-type"), "application/json") << post.output;
        EXPECT_EQ(field_of(post.output, "content-length"), std::to_string(answer.size()))
            << post.output;
        EXPECT_EQ(field_of(post.output, "x-stagegate-version"), "v1") << post.output;
        EXPECT_EQ(field_of(post.output, "x-stagegate-stage"), "canary") << post.output;
        EXPECT_EQ(field_of(post.output, "x-request-id"), "rid-7") << post.output;
        EXPECT_EQ(body_of(post.output), answer) << post.output;
        auto lower = post.output;
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        EXPECT_EQ(occurrences(lower, "x-stagegate-version:"), 1u) << post.output;

        const auto head = run("curl -sS -I " + client + " " + predict);
        ASSERT_EQ(head.exit_code, 0) << head.output;
        EXPECT_EQ(field_of(head.output, "x-backend"), "v1") << head.output;
        EXPECT_EQ(body_of(head.output), "") << head.output;

        const auto empty = run("curl -sS -i " + client + " '" + predict + "?answer=empty'");
        ASSERT_EQ(empty.exit_code, 0) << empty.output;
        EXPECT_NE(empty.output.find(" 204"), std::string::npos) << empty.output;
        EXPECT_EQ(field_of(empty.output, "x-stagegate-version"), "v1") << empty.output;
        EXPECT_EQ(body_of(empty.output), "") << empty.output;

        const auto trailed = run("curl -sS " + client + " '" + predict + "?answer=trailers'");
        ASSERT_EQ(trailed.exit_code, 0) << trailed.output;
        EXPECT_EQ(trailed.output, "first second");

        // Fields past 64 KiB (the bound an answer head has) end the backend's stream: a 502
        // that says so, and the gateway serves on.
        const auto big = run("curl -sS -i " + client + " '" + predict + "?answer=big-head'");
        ASSERT_EQ(big.exit_code, 0) << big.output;
        EXPECT_NE(big.output.find(" 502"), std::string::npos) << big.output.substr(0, 300);
        EXPECT_NE(big.output.find("its answer's fields passed 64 KiB"), std::string::npos)
            << big.output.substr(0, 600);
    }
    // The trailers, as each kind of client receives them.
    const auto h2 = run("nghttp -nv '" + predict + "?answer=trailers'");
    ASSERT_EQ(h2.exit_code, 0) << h2.output;
    const auto trailer_at = h2.output.find("x-checksum: ok");
    ASSERT_NE(trailer_at, std::string::npos) << h2.output;
    EXPECT_NE(h2.output.find("END_STREAM", trailer_at), std::string::npos) << h2.output;
    EXPECT_EQ(h2.output.find("x-stagegate-version", trailer_at), std::string::npos) << h2.output;
    // A bodiless answer is one HEADERS frame that ends the stream, no DATA.
    const auto bodiless = run("nghttp -nv '" + predict + "?answer=empty'");
    ASSERT_EQ(bodiless.exit_code, 0) << bodiless.output;
    EXPECT_NE(bodiless.output.find(":status: 204"), std::string::npos) << bodiless.output;
    EXPECT_NE(bodiless.output.find("; END_STREAM | END_HEADERS\n"), std::string::npos)
        << bodiless.output;
    EXPECT_EQ(bodiless.output.find("recv DATA frame"), std::string::npos) << bodiless.output;
    connection h1(port, false, 5s);
    ASSERT_TRUE(h1.connected());
    ASSERT_TRUE(h1.write_raw("GET /v1/models/m:predict?answer=trailers HTTP/1.1\r\n"
                             "Host: x\r\nTE: trailers\r\n\r\n"));
    const auto raw = h1.read_until("x-checksum: ok\r\n\r\n");
    EXPECT_NE(raw.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << raw;
    EXPECT_NE(raw.find("\r\n0\r\nx-checksum: ok\r\n\r\n"), std::string::npos) << raw;
}

TEST_F(Http2, TlsListenerOffersHttp2ByAlpnAndKeepsHttp11) {
    auto cert = make_test_certificate();
    auto s = stack::make(0, 1, [&](config::gateway& c) {
        c.listeners[0].tls = config::tls_server{cert.cert_file, cert.key_file};
    });
    auto h2 =
        run("curl -sS -i --http2 --cacert " + cert.cert_file +
            " -H 'content-type: application/json' --data '" + predict_body + "' " +
            "--resolve localhost:" + std::to_string(s.port) +
            ":127.0.0.1 https://localhost:" + std::to_string(s.port) + "/v1/models/m:predict");
    ASSERT_EQ(h2.exit_code, 0) << h2.output;
    EXPECT_NE(h2.output.find("HTTP/2 200"), std::string::npos) << h2.output;
    EXPECT_NE(h2.output.find("x-stagegate-version: v1"), std::string::npos) << h2.output;
    auto h1 =
        run("curl -sS -i --http1.1 --cacert " + cert.cert_file + " --data '" + predict_body +
            "' --resolve localhost:" + std::to_string(s.port) +
            ":127.0.0.1 https://localhost:" + std::to_string(s.port) + "/v1/models/m:predict");
    ASSERT_EQ(h1.exit_code, 0) << h1.output;
    EXPECT_NE(h1.output.find("HTTP/1.1 200"), std::string::npos) << h1.output;
}

// A client that sends the preface and then garbage gets a GOAWAY and a closed connection;
// the gateway goes on serving.
TEST_F(Http2, BrokenFramesEndTheConnectionWithGoawayAndServingGoesOn) {
    auto s = stack::make();
    connection c(s.port, false, 5s);
    ASSERT_TRUE(c.connected());
    std::string bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    // A SETTINGS frame of length 5 (not a multiple of 6): FRAME_SIZE_ERROR on the connection.
    bytes += std::string("\x00\x00\x05\x04\x00\x00\x00\x00\x00", 9) + std::string(5, '\0');
    ASSERT_TRUE(c.write_raw(bytes));
    auto got = c.read_until(std::string("\x07\x00\x00\x00\x00\x00", 6));  // GOAWAY, stream 0
    EXPECT_NE(got.find(std::string("\x07\x00\x00\x00\x00\x00", 6)), std::string::npos);
    EXPECT_TRUE(c.peer_closed());

    auto after = run("curl -sS -i --http2-prior-knowledge --data '" + predict_body + "' " +
                     url(s.port, "/v1/models/m:predict"));
    EXPECT_NE(after.output.find("HTTP/2 200"), std::string::npos) << after.output;
}

// A graceful stop finishes the streams in flight on an HTTP/2 connection, and closes an idle
// HTTP/2 connection with a GOAWAY.
TEST_F(Http2, DrainFinishesStreamsInFlightAndClosesIdleConnectionsWithGoaway) {
    auto s = stack::make();
    connection idle(s.port, false, 10s);
    ASSERT_TRUE(idle.connected());
    // The preface and an empty SETTINGS; the server's SETTINGS (type 4) comes back.
    ASSERT_TRUE(idle.write_raw(std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") +
                               std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9)));
    ASSERT_NE(idle.read_until(std::string("\x04\x01\x00\x00\x00\x00", 6)).size(), 0u);

    const std::string body_file = ::testing::TempDir() + "/h2_drain_body.json";
    std::ofstream(body_file) << predict_body;
    const auto before = s.v1->requests();
    auto in_flight = std::async(std::launch::async, [&] {
        return run("nghttp -nv -H 'x-mock-delay-ms: 400' -d " + body_file + " '" +
                   url(s.port, "/v1/models/m:predict?1") + "' '" +
                   url(s.port, "/v1/models/m:predict?2") + "' '" +
                   url(s.port, "/v1/models/m:predict?3") + "'");
    });
    ASSERT_TRUE(wait_until([&] { return s.v1->requests() >= before + 3; }));
    s.gateway->stop();
    auto r = in_flight.get();
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const auto answered = occurrences(r.output, ":status: 200");
    EXPECT_EQ(answered, 3u) << r.output;
    // (The busy connection's GOAWAY follows its answers; nghttp may leave before reading it.)
    // GOAWAY (type 7) on stream 0, then the close.
    EXPECT_NE(idle.read_until(std::string("\x07\x00\x00\x00\x00\x00", 6))
                  .find(std::string("\x07\x00\x00\x00\x00\x00", 6)),
              std::string::npos);
    EXPECT_TRUE(idle.peer_closed());
    s.gateway->wait();
}

// An HTTP/2 connection with no stream open is closed after the idle timeout, with a GOAWAY.
TEST_F(Http2, IdleConnectionIsClosedWithGoawayAfterTheIdleTimeout) {
    auto s = stack::make(
        0, 1, [](config::gateway& c) { c.client.idle = std::chrono::milliseconds(300); });
    connection c(s.port, false, 10s);
    ASSERT_TRUE(c.write_raw(std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") +
                            std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9)));
    auto got = c.read_until(std::string("\x07\x00\x00\x00\x00\x00", 6));
    EXPECT_NE(got.find(std::string("\x07\x00\x00\x00\x00\x00", 6)), std::string::npos);
    EXPECT_TRUE(c.peer_closed());
}

}  // namespace
}  // namespace stagegate::test
