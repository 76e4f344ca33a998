#include "stagegate/core/secret_file.hpp"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace stagegate {

std::optional<std::string> read_secret_file(const std::string& path) {
    std::error_code ec;
    std::ifstream in(path, std::ios::binary);
    if (!in || std::filesystem::is_directory(path, ec)) {  // a directory opens, reads as empty
        return std::nullopt;
    }
    std::stringstream text;
    text << in.rdbuf();
    if (in.bad()) {
        return std::nullopt;
    }
    std::string secret = text.str();
    while (!secret.empty() && std::isspace(static_cast<unsigned char>(secret.back()))) {
        secret.pop_back();
    }
    return secret;
}

}  // namespace stagegate
