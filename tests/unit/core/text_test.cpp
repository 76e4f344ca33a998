#include "stagegate/core/text.hpp"

#include <gtest/gtest.h>

namespace stagegate {
namespace {

TEST(PercentEncoding, RoundTripsEveryByte) {
    std::string all;
    for (int c = 0; c < 256; ++c) {
        all += static_cast<char>(c);
    }
    auto encoded = percent_encode(all);
    EXPECT_EQ(encoded.find_first_of("/ ?&%+", 0), encoded.find('%'));  // only escapes
    EXPECT_EQ(percent_decode(encoded, false), all);
    EXPECT_EQ(percent_encode("fraud-v2.1_x~y"), "fraud-v2.1_x~y");
    EXPECT_EQ(percent_encode("a~b", "-"), "a%7Eb");
}

TEST(PercentEncoding, PlusIsASpaceOnlyInQueries) {
    EXPECT_EQ(percent_decode("a+b%20c", true), "a b c");
    EXPECT_EQ(percent_decode("a+b", false), "a+b");
}

TEST(PercentEncoding, MalformedEscapesAreRefused) {
    EXPECT_FALSE(percent_decode("%", false));
    EXPECT_FALSE(percent_decode("ab%4", false));
    EXPECT_FALSE(percent_decode("%zz", false));
    EXPECT_EQ(percent_decode("%41", false), "A");
}

}  // namespace
}  // namespace stagegate
