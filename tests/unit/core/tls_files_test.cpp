#include "stagegate/core/tls_files.hpp"

#include "support/test_client.hpp"

#include <boost/asio/ssl/context.hpp>
#include <gtest/gtest.h>

namespace stagegate {
namespace {

TEST(TlsFiles, AServerContextLoadsAMatchingCertificateAndKey) {
    const auto cert = test::make_test_certificate();
    auto ctx = tls_server_context(cert.cert_file, cert.key_file);
    ASSERT_TRUE(ctx) << ctx.error().message;
    EXPECT_NE(*ctx, nullptr);
}

// Each failure names the file that failed, so the operator knows which one to fix.
TEST(TlsFiles, AFailureNamesTheFileThatFailed) {
    const auto cert = test::make_test_certificate();
    const auto other = test::make_test_certificate();
    boost::asio::ssl::context ctx(boost::asio::ssl::context::tls_client);

    const auto no_chain = load_certificate_and_key(ctx, "/nonexistent/c.pem", cert.key_file);
    ASSERT_TRUE(no_chain);
    EXPECT_FALSE(no_chain->key);
    EXPECT_NE(no_chain->message.find("certificate /nonexistent/c.pem"), std::string::npos)
        << no_chain->message;

    const auto no_key = load_certificate_and_key(ctx, cert.cert_file, "/nonexistent/k.pem");
    ASSERT_TRUE(no_key);
    EXPECT_TRUE(no_key->key);
    EXPECT_NE(no_key->message.find("key /nonexistent/k.pem"), std::string::npos)
        << no_key->message;

    // Another certificate's key: OpenSSL refuses it as it loads.
    boost::asio::ssl::context fresh(boost::asio::ssl::context::tls_client);
    const auto mismatch = load_certificate_and_key(fresh, cert.cert_file, other.key_file);
    ASSERT_TRUE(mismatch);
    EXPECT_TRUE(mismatch->key);

    auto server = tls_server_context("/nonexistent/c.pem", cert.key_file);
    ASSERT_FALSE(server);
    EXPECT_EQ(server.error().code, "tls_setup_failed");
    EXPECT_NE(server.error().message.find("/nonexistent/c.pem"), std::string::npos);
}

}  // namespace
}  // namespace stagegate
