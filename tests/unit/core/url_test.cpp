// parse_http_url (Boost.URL underneath): what an http_call is sent to, from the URLs the
// config, stagegatectl's --server and the cluster's etcd endpoints give.
#include "stagegate/core/http_client.hpp"

#include <gtest/gtest.h>

namespace stagegate {
namespace {

TEST(HttpUrl, ReadsSchemeHostPortAndTarget) {
    auto v6 = parse_http_url("https://[::1]:8443/v3/kv/range?x=a%20b#part");
    ASSERT_TRUE(v6) << v6.error().message;
    EXPECT_TRUE(v6->tls);
    EXPECT_EQ(v6->host, "::1");
    EXPECT_EQ(v6->port, "8443");
    EXPECT_EQ(v6->target, "/v3/kv/range?x=a%20b");  // as written; a fragment is never sent
    auto bare = parse_http_url("etcd-0:2379");  // host:port is http
    ASSERT_TRUE(bare);
    EXPECT_FALSE(bare->tls);
    EXPECT_EQ(bare->host, "etcd-0");
    EXPECT_EQ(bare->port, "2379");
    EXPECT_EQ(bare->target, "/");
    // A query straight after the host is the target's, not part of the host name.
    auto query = parse_http_url("http://hooks.local?token=x");
    ASSERT_TRUE(query);
    EXPECT_EQ(query->host, "hooks.local");
    EXPECT_EQ(query->target, "/?token=x");
    auto upper = parse_http_url("HTTPS://Example.org");  // schemes are case-insensitive
    ASSERT_TRUE(upper);
    EXPECT_TRUE(upper->tls);
    EXPECT_EQ(upper->port, "443");
    EXPECT_TRUE(parse_http_url("http://127.0.0.1:9901/", /*allow_path=*/false));
}

TEST(HttpUrl, RefusesWhatItCannotCall) {
    for (const char* bad : {"ftp://x", "http://", "http://h:", "http://h:0", "http://h:65536",
                            "http://a b/", "http://u:p@h/", "http://h/%zz", "http://[::1"}) {
        EXPECT_FALSE(parse_http_url(bad)) << bad;
    }
    auto path = parse_http_url("http://h:1/api", /*allow_path=*/false);
    ASSERT_FALSE(path);
    EXPECT_NE(path.error().message.find("without a path"), std::string::npos);
    EXPECT_FALSE(parse_http_url("http://h:1?x=1", /*allow_path=*/false));
}

}  // namespace
}  // namespace stagegate
