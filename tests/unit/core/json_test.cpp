#include "stagegate/core/json.hpp"

#include <gtest/gtest.h>

#include <string>

namespace stagegate {
namespace {

std::string nested(int levels) {
    return std::string(static_cast<std::size_t>(levels), '[') +
           std::string(static_cast<std::size_t>(levels), ']');
}

TEST(Json, DepthCountsBracketsOutsideStringsAndComments) {
    EXPECT_EQ(json_depth("{}"), 1);
    EXPECT_EQ(json_depth(R"({"a": [1, {"b": [[]]}]})"), 5);
    EXPECT_EQ(json_depth(R"({"a": "[[[[[\"[[[["})"), 1);  // brackets and escaped quotes in a string
    EXPECT_EQ(json_depth("{\"a\": 1 // [[[[\n}", true), 1);
    EXPECT_EQ(json_depth("{\"a\": /* [[[[ */ 1}", true), 1);
    EXPECT_EQ(json_depth("]]]][["), 2);  // stray closers never go below zero
}

TEST(Json, TooDeepIsRefusedWithTheReasonBeforeAnyTreeIsBuilt) {
    std::string problem;
    EXPECT_TRUE(parse_json(nested(max_json_depth), &problem).is_array()) << problem;
    auto deep = parse_json("{\"model\":\"m\",\"rollout\":" + nested(100000) + "}", &problem);
    EXPECT_TRUE(deep.is_discarded());
    EXPECT_EQ(problem, "nests 100001 levels deep; at most 64 are accepted");
    EXPECT_TRUE(parse_json("{", &problem).is_discarded());
    EXPECT_EQ(problem, "not JSON");
    EXPECT_TRUE(parse_json("{\"a\": 1 /* c */}", nullptr, true).is_object());
}

}  // namespace
}  // namespace stagegate
