#include "stagegate/core/secret_file.hpp"

#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <fstream>

namespace stagegate {
namespace {

TEST(SecretFile, TrailingWhitespaceGoesTheRestStays) {
    test::temp_dir dir;
    const auto path = dir.path + "/token";
    std::ofstream(path) << " a b\tc \r\n\n";
    EXPECT_EQ(read_secret_file(path), " a b\tc");
}

TEST(SecretFile, AFileThatCannotBeReadIsNone) {
    test::temp_dir dir;
    EXPECT_EQ(read_secret_file(dir.path + "/missing"), std::nullopt);
    EXPECT_EQ(read_secret_file(dir.path), std::nullopt);  // a directory
}

}  // namespace
}  // namespace stagegate
