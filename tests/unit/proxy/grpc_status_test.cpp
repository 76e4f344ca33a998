// gRPC statuses where they meet HTTP: what a call's status is recorded as, what the gateway's
// own errors tell a gRPC client, grpc-timeout, and the trailers-only error answer.
#include "proxy/grpc_status.hpp"

#include <gtest/gtest.h>

namespace stagegate::proxy {
namespace {

TEST(GrpcStatus, CallStatusesAreRecordedAsTheirHttpEquivalents) {
    EXPECT_EQ(http_status_of_grpc(grpc_code::ok), 200u);
    // The ones the error-rate gate counts.
    EXPECT_EQ(http_status_of_grpc(grpc_code::unavailable), 503u);
    EXPECT_EQ(http_status_of_grpc(grpc_code::internal), 500u);
    EXPECT_EQ(http_status_of_grpc(grpc_code::unknown), 500u);
    EXPECT_EQ(http_status_of_grpc(grpc_code::deadline_exceeded), 504u);
    // The client's: compared with stable by the 4xx gate, never errors.
    EXPECT_EQ(http_status_of_grpc(grpc_code::invalid_argument), 400u);
    EXPECT_EQ(http_status_of_grpc(grpc_code::not_found), 404u);
    EXPECT_EQ(http_status_of_grpc(grpc_code::cancelled), 499u);
    EXPECT_EQ(http_status_of_grpc(99), 500u);
    EXPECT_EQ(parse_grpc_status("14"), 14u);
    EXPECT_EQ(parse_grpc_status("0"), 0u);
    EXPECT_FALSE(parse_grpc_status(""));
    EXPECT_FALSE(parse_grpc_status("1x"));
}

TEST(GrpcStatus, GatewayErrorsGetTheCodeThatSaysWhat) {
    EXPECT_EQ(grpc_code_of_problem(http::status::gateway_timeout, "upstream_timeout"),
              grpc_code::deadline_exceeded);
    EXPECT_EQ(grpc_code_of_problem(http::status::not_found, "unknown_model"), grpc_code::not_found);
    EXPECT_EQ(grpc_code_of_problem(http::status::not_found, "no_route"), grpc_code::unimplemented);
    EXPECT_EQ(grpc_code_of_problem(http::status::service_unavailable, "no_healthy_upstream"),
              grpc_code::unavailable);
    EXPECT_EQ(grpc_code_of_problem(http::status::bad_gateway, "upstream_reset"),
              grpc_code::unavailable);
    EXPECT_EQ(grpc_code_of_problem(http::status::payload_too_large, "body_too_large"),
              grpc_code::resource_exhausted);
    EXPECT_EQ(grpc_code_of_problem(http::status::bad_request, "missing_model"),
              grpc_code::invalid_argument);
    EXPECT_EQ(grpc_code_of_problem(http::status::internal_server_error, "x"), grpc_code::internal);
}

TEST(GrpcStatus, TimeoutsInEveryUnitRoundUpToMilliseconds) {
    using std::chrono::milliseconds;
    EXPECT_EQ(parse_grpc_timeout("1H"), milliseconds(3600000));
    EXPECT_EQ(parse_grpc_timeout("2M"), milliseconds(120000));
    EXPECT_EQ(parse_grpc_timeout("3S"), milliseconds(3000));
    EXPECT_EQ(parse_grpc_timeout("250m"), milliseconds(250));
    EXPECT_EQ(parse_grpc_timeout("1500u"), milliseconds(2));
    EXPECT_EQ(parse_grpc_timeout("1n"), milliseconds(1));
    EXPECT_FALSE(parse_grpc_timeout("S"));
    EXPECT_FALSE(parse_grpc_timeout("123456789S"));  // more than 8 digits
    EXPECT_FALSE(parse_grpc_timeout("10x"));
    EXPECT_FALSE(parse_grpc_timeout("1.5S"));
}

TEST(GrpcStatus, ErrorAnswersAreTrailersOnlyWithAnEncodedMessage) {
    auto res = grpc_error_response(http::status::not_found, "unknown_model",
                                   "no model named \"x%\"\n", "rid-1", routed_to{"v2", "canary"});
    EXPECT_EQ(res.result(), http::status::ok);
    EXPECT_EQ(res["content-type"], "application/grpc");
    EXPECT_EQ(res["grpc-status"], "5");
    EXPECT_EQ(res["grpc-message"], "no model named \"x%25\"%0A");
    EXPECT_EQ(res["X-Stagegate-Version"], "v2");
    EXPECT_EQ(res["X-Stagegate-Error"], "unknown_model");
    EXPECT_EQ(res["Content-Length"], "0");
    EXPECT_TRUE(res.body().empty());
}

TEST(GrpcStatus, OnlyGrpcContentTypesAreGrpcCalls) {
    client_request req;
    EXPECT_FALSE(is_grpc_request(req));
    req.set(http::field::content_type, "application/grpc");
    EXPECT_TRUE(is_grpc_request(req));
    req.set(http::field::content_type, "application/grpc+proto");
    EXPECT_TRUE(is_grpc_request(req));
    req.set(http::field::content_type, "application/grpc-web");
    EXPECT_FALSE(is_grpc_request(req));
    req.set(http::field::content_type, "application/json");
    EXPECT_FALSE(is_grpc_request(req));
}

TEST(GrpcStatus, MessagesAreCountedHoweverTheFramesCutThem) {
    // Three messages: 3 bytes, empty, 300 bytes (a length with two significant bytes).
    std::string stream{0, 0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0, 0, 0, 0, 0, 1, 44};
    stream.append(300, 'x');
    grpc_message_counter whole;
    EXPECT_EQ(whole.count(stream), 3u);
    for (std::size_t cut = 1; cut < stream.size(); ++cut) {  // every split into two pieces
        grpc_message_counter split;
        const auto first = split.count(std::string_view(stream).substr(0, cut));
        EXPECT_EQ(first + split.count(std::string_view(stream).substr(cut)), 3u) << cut;
    }
    grpc_message_counter bytewise;
    std::uint32_t n = 0;
    for (char c : stream) {
        n += bytewise.count(std::string_view(&c, 1));
    }
    EXPECT_EQ(n, 3u);
    EXPECT_EQ(bytewise.count(std::string_view(stream).substr(0, 4)), 0u);  // a prefix alone
}

}  // namespace
}  // namespace stagegate::proxy
