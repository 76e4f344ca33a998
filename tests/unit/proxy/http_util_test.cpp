#include "proxy/http_util.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace stagegate::proxy {
namespace {

TEST(StripHopByHop, RemovesStandardAndConnectionNamedHeaders) {
    http::fields f;
    f.set(http::field::connection, "keep-alive, X-Secret, Content-Length");
    f.set("Keep-Alive", "timeout=5");
    f.set("X-Secret", "1");
    f.set("TE", "trailers");
    f.set("Upgrade", "h2c");
    f.set("Proxy-Connection", "keep-alive");
    f.set(http::field::content_length, "5");
    f.set("X-Keep", "yes");
    strip_hop_by_hop(f);
    EXPECT_EQ(f.count(http::field::connection), 0u);
    EXPECT_EQ(f.count("Keep-Alive"), 0u);
    EXPECT_EQ(f.count("X-Secret"), 0u);
    EXPECT_EQ(f.count("TE"), 0u);
    EXPECT_EQ(f.count("Upgrade"), 0u);
    EXPECT_EQ(f.count("Proxy-Connection"), 0u);
    EXPECT_EQ(f.count(http::field::content_length), 1u);  // framing is never a hop header here
    EXPECT_EQ(f["X-Keep"], "yes");
}

TEST(ForwardedFor, AppendsOrCreates) {
    http::fields f;
    append_forwarded_for(f, "10.0.0.1");
    EXPECT_EQ(f["X-Forwarded-For"], "10.0.0.1");
    append_forwarded_for(f, "127.0.0.1");
    EXPECT_EQ(f["X-Forwarded-For"], "10.0.0.1, 127.0.0.1");
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
