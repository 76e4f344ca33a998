#include "stagegate/cluster/etcd.hpp"

#include "cluster/watch_lines.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace stagegate::cluster {
namespace {

TEST(EtcdEncoding, Base64RoundTripsEveryLength) {
    std::string bytes;
    for (int n = 0; n < 40; ++n) {
        EXPECT_EQ(unbase64(base64(bytes)), bytes) << n;
        bytes.push_back(static_cast<char>(n * 37));
    }
    EXPECT_EQ(base64("/sg/a"), "L3NnL2E=");
    EXPECT_EQ(unbase64("aGVsbG8="), "hello");
    EXPECT_EQ(unbase64("not base64!"), "");
}

TEST(EtcdEncoding, PrefixEndIsTheFirstKeyAfterThePrefix) {
    EXPECT_EQ(prefix_end("/a/"), "/a0");
    EXPECT_EQ(prefix_end(std::string("a\xff", 2)), "b");
    EXPECT_EQ(prefix_end(std::string("\xff\xff", 2)), std::string(1, '\0'));
}

TEST(EtcdEncoding, ReadsInt64sGivenAsStringsAndLeftOutZeros) {
    auto answer = nlohmann::json::parse(R"({"header": {"revision": "42"},
        "kvs": [{"key": "L3NnL2E=", "value": "aGVsbG8=", "create_revision": "2",
                 "mod_revision": "3", "lease": "7587862010281418245"}]})");
    EXPECT_EQ(etcd_client::revision_of(answer), 42);
    auto kvs = etcd_client::kvs_of(answer);
    ASSERT_EQ(kvs.size(), 1u);
    EXPECT_EQ(kvs[0].key, "/sg/a");
    EXPECT_EQ(kvs[0].value, "hello");
    EXPECT_EQ(kvs[0].mod_revision, 3);
    EXPECT_EQ(kvs[0].lease, 7587862010281418245);
    EXPECT_EQ(etcd_client::int_of(nlohmann::json::object(), "TTL"), 0);
    EXPECT_TRUE(etcd_client::kvs_of(nlohmann::json::object()).empty());
}

// The watch's lines come in pieces that split them anywhere (etcd's chunks, TCP's segments).
TEST(EtcdWatchLines, ReassemblesLinesAcrossPiecesAndSkipsBlankOnes) {
    std::vector<std::string> lines;
    watch_lines read(64, [&](const std::string& line) {
        lines.push_back(line);
        return true;
    });
    EXPECT_TRUE(read("{\"a\""));
    EXPECT_TRUE(lines.empty());
    EXPECT_TRUE(read(":1}\n\n{\"b\":2}\n{\"c\""));
    EXPECT_EQ(lines, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"}));
    read("");  // the body's end: the unterminated last line still counts
    EXPECT_EQ(lines, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}", "{\"c\""}));
}

TEST(EtcdWatchLines, StopsWhenTheReaderSaysSoOrALineOutgrowsTheLimit) {
    int seen = 0;
    watch_lines stop_at_first(64, [&](const std::string&) {
        ++seen;
        return false;
    });
    EXPECT_FALSE(stop_at_first("one\ntwo\n"));
    EXPECT_EQ(seen, 1);

    watch_lines bounded(4, [](const std::string&) { return true; });
    EXPECT_TRUE(bounded("abcd"));
    EXPECT_FALSE(bounded("e"));  // five bytes and no end of line yet
}

}  // namespace
}  // namespace stagegate::cluster
