// The HTTP/2 preface check that sends a cleartext connection to HTTP/1.1 or HTTP/2.
#include "proxy/h2_session.hpp"

#include <gtest/gtest.h>

namespace stagegate::proxy {
namespace {

TEST(H2Preface, TheWholePrefaceIsHttp2AndEveryProperPrefixIsUndecided) {
    const std::string preface(h2_client_preface);
    EXPECT_EQ(match_h2_preface(preface), preface_match::http2);
    EXPECT_EQ(match_h2_preface(preface + "\x00\x00\x00\x04"), preface_match::http2);
    for (std::size_t n = 0; n < preface.size(); ++n) {
        EXPECT_EQ(match_h2_preface(preface.substr(0, n)), preface_match::undecided) << n;
    }
}

TEST(H2Preface, AnHttp1RequestIsToldApartAtItsFirstDifferentByte) {
    EXPECT_EQ(match_h2_preface("P"), preface_match::undecided);
    EXPECT_EQ(match_h2_preface("POST /v1/models/m:predict HTTP/1.1\r\n"), preface_match::http1);
    EXPECT_EQ(match_h2_preface("GET / HTTP/1.1\r\n"), preface_match::http1);
    // An HTTP/1.1 request for the method PRI is not the preface either.
    EXPECT_EQ(match_h2_preface("PRI * HTTP/1.1\r\n\r\n"), preface_match::http1);
}

}  // namespace
}  // namespace stagegate::proxy
