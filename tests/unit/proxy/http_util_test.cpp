#include "proxy/http_util.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace stagegate::proxy {
namespace {

request_type sample_request() {
    request_type req{http::verb::post, "/v1/models/m:predict?x=1", 11};
    req.set(http::field::host, "gw");
    req.set(http::field::connection, "keep-alive, X-Secret, Content-Length");
    req.set("Keep-Alive", "timeout=5");
    req.set("X-Secret", "1");
    req.set("TE", "trailers");
    req.set("Upgrade", "h2c");
    req.set("Proxy-Connection", "keep-alive");
    req.set(http::field::transfer_encoding, "chunked");
    req.set(http::field::expect, "100-continue");
    req.set("X-Stagegate-Force-Version", "v2");
    req.set("X-Request-Id", "client-id");
    req.set("X-Forwarded-For", "203.0.113.7");
    req.set(http::field::via, "1.1 edge");
    req.set("X-Keep", "yes");
    return req;
}

TEST(SerializeRequestHead, DropsHopByHopAndAddsProxyHeaders) {
    auto req = sample_request();
    std::string out;
    serialize_request_head(out, req, forward_info{"127.0.0.1", true, "rid-9", 11}, 21);
    EXPECT_EQ(out.rfind("POST /v1/models/m:predict?x=1 HTTP/1.1\r\n", 0), 0u) << out;
    for (const char* gone : {"Keep-Alive", "X-Secret", "TE:", "Upgrade", "Proxy-Connection",
                             "Transfer-Encoding", "Expect", "X-Stagegate-Force-Version",
                             "client-id", "Connection"}) {
        EXPECT_EQ(out.find(gone), std::string::npos) << gone << " leaked:\n" << out;
    }
    EXPECT_NE(out.find("Host: gw\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Keep: yes\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Forwarded-For: 203.0.113.7, 127.0.0.1\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Forwarded-Proto: https\r\n"), std::string::npos);
    EXPECT_NE(out.find("Via: 1.1 edge, 1.1 stagegate\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Request-Id: rid-9\r\n"), std::string::npos);
    EXPECT_NE(out.find("Content-Length: 21\r\n"), std::string::npos);
    EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n");
}

TEST(SerializeRequestHead, GetWithoutBodyHasNoContentLength) {
    request_type req{http::verb::get, "/v2/models/m", 11};
    std::string out;
    serialize_request_head(out, req, forward_info{"10.0.0.1", false, "r", 10}, 0);
    EXPECT_EQ(out.find("Content-Length"), std::string::npos);
    EXPECT_NE(out.find("X-Forwarded-For: 10.0.0.1\r\n"), std::string::npos);
    EXPECT_NE(out.find("Via: 1.0 stagegate\r\n"), std::string::npos);
}

TEST(SerializeResponseHead, ReframesAndStamps) {
    http::response<http::empty_body, fields_type> res{http::status::ok, 11};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::transfer_encoding, "chunked");
    res.set(http::field::connection, "keep-alive, X-Hop");
    res.set("X-Hop", "1");
    res.set("Keep-Alive", "timeout=5");
    response_info info;
    info.version = "v2";
    info.stage = "canary-5";
    info.request_id = "rid";
    info.framing = body_framing::content_length;
    info.content_length = 42;
    info.keep_alive = false;
    std::string out;
    serialize_response_head(out, res, info);
    EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << out;
    EXPECT_NE(out.find("Content-Type: application/json\r\n"), std::string::npos);
    EXPECT_NE(out.find("Content-Length: 42\r\n"), std::string::npos);
    EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Stagegate-Version: v2\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Stagegate-Stage: canary-5\r\n"), std::string::npos);
    EXPECT_NE(out.find("X-Request-Id: rid\r\n"), std::string::npos);
    EXPECT_EQ(out.find("chunked"), std::string::npos);
    EXPECT_EQ(out.find("X-Hop"), std::string::npos);
    EXPECT_EQ(out.find("Keep-Alive"), std::string::npos);

    info.framing = body_framing::chunked;
    info.keep_alive = true;
    out.clear();
    serialize_response_head(out, res, info);
    EXPECT_NE(out.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
    EXPECT_EQ(out.find("Connection:"), std::string::npos);  // HTTP/1.1 keep-alive is implicit
}

TEST(SerializeResponseHead, Http10ClientKeepAliveIsExplicit) {
    http::response<http::empty_body, fields_type> res{http::status::not_found, 11};
    response_info info;
    info.client_version = 10;
    info.keep_alive = true;
    info.framing = body_framing::content_length;
    std::string out;
    serialize_response_head(out, res, info);
    EXPECT_EQ(out.rfind("HTTP/1.0 404 Not Found\r\n", 0), 0u) << out;
    EXPECT_NE(out.find("Connection: keep-alive\r\n"), std::string::npos);
}

TEST(ChunkSize, IsHexWithCrlf) {
    char out[24];
    EXPECT_EQ(std::string(out, format_chunk_size(out, 255)), "ff\r\n");
    EXPECT_EQ(std::string(out, format_chunk_size(out, 0x10000)), "10000\r\n");
}

TEST(RequestId, OnlyShortPrintableIdsAreKept) {
    EXPECT_TRUE(acceptable_request_id("abc-123"));
    EXPECT_FALSE(acceptable_request_id(""));
    EXPECT_FALSE(acceptable_request_id("a b"));
    EXPECT_FALSE(acceptable_request_id(std::string(200, 'a')));
}

TEST(ErrorResponse, JsonBodyWithCodeMessageAndRequestId) {
    auto res = error_response(http::status::not_found, "unknown_model", "no \"x\"\xff", "rid-1",
                              true);
    EXPECT_EQ(res.result(), http::status::not_found);
    EXPECT_EQ(res[http::field::content_type], "application/json");
    EXPECT_EQ(res["X-Request-Id"], "rid-1");
    auto body = nlohmann::json::parse(res.body());
    EXPECT_EQ(body["error"]["code"], "unknown_model");
    EXPECT_EQ(body["error"]["request_id"], "rid-1");
    EXPECT_TRUE(res.keep_alive());
    EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));
}

TEST(ClassifyRequestError, MapsParserErrorsToStatuses) {
    EXPECT_EQ(classify_request_error(http::error::header_limit).status,
              http::status::request_header_fields_too_large);
    EXPECT_EQ(classify_request_error(http::error::body_limit).status,
              http::status::payload_too_large);
    EXPECT_EQ(classify_request_error(http::error::bad_content_length).code,
              "invalid_content_length");
    EXPECT_EQ(classify_request_error(http::error::bad_method).status, http::status::bad_request);
}

}  // namespace
}  // namespace stagegate::proxy
