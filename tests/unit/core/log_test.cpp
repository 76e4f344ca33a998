#include "stagegate/core/log.hpp"

#include <gtest/gtest.h>

namespace stagegate::log {
namespace {

TEST(Log, OneLogfmtLineWithQuotedValuesWhereNeeded) {
    const auto line = format_line(level::warn, "notify", "webhook gave up",
                                  {{"webhook", "ops"}, {"detail", "HTTP 503: \"busy\"\nretry"}});
    ASSERT_EQ(line.substr(0, 5), "time=");
    EXPECT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1);  // escaped, so one line
    EXPECT_NE(line.find(" level=warn component=notify msg=\"webhook gave up\" webhook=ops "
                        "detail=\"HTTP 503: \\\"busy\\\"\\nretry\"\n"),
              std::string::npos)
        << line;
}

TEST(Log, EmptyValuesAreQuotedSoTheLineStaysParsable) {
    const auto line = format_line(level::info, "main", "serving", {{"admin_port", ""}});
    EXPECT_NE(line.find(" admin_port=\"\"\n"), std::string::npos) << line;
}

TEST(Log, LevelsFilterAndParse) {
    EXPECT_EQ(parse_level("debug"), level::debug);
    EXPECT_EQ(parse_level("error"), level::error);
    EXPECT_FALSE(parse_level("verbose"));
    set_level(level::warn);
    EXPECT_FALSE(enabled(level::info));
    EXPECT_TRUE(enabled(level::warn));
    EXPECT_TRUE(enabled(level::error));
    set_level(level::info);
    EXPECT_TRUE(enabled(level::info));
    EXPECT_FALSE(enabled(level::debug));
}

}  // namespace
}  // namespace stagegate::log
