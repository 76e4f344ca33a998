#include "admin_auth.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <fstream>
#include <sstream>

namespace stagegate::admin {

namespace {

std::array<unsigned char, 32> digest_of(std::string_view text) {
    std::array<unsigned char, 32> out{};
    SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), out.data());
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i]))) {
            return false;
        }
    }
    return true;
}

}  // namespace

result<token_table> token_table::load(const std::vector<config::admin_token>& tokens) {
    token_table table;
    for (const auto& t : tokens) {
        std::ifstream in(t.file, std::ios::binary);
        if (!in) {
            return error::make("token_unreadable", "cannot read the token file of admin token \"" +
                                                       t.name + "\": " + t.file);
        }
        std::stringstream text;
        text << in.rdbuf();
        std::string token = text.str();
        while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
            token.pop_back();
        }
        if (token.size() < 16 || token.find_first_of(" \t\r\n") != std::string::npos) {
            return error::make("token_too_weak",
                               "the token file of admin token \"" + t.name + "\" (" + t.file +
                                   ") must hold one token of at least 16 characters, no spaces");
        }
        table.entries_.push_back(
            {digest_of(token), principal{t.name, t.role == config::admin_role::operator_}});
    }
    return table;
}

std::optional<principal> token_table::authenticate(std::string_view authorization) const {
    constexpr std::string_view scheme = "bearer ";
    if (authorization.size() <= scheme.size() ||
        !iequals(authorization.substr(0, scheme.size()), scheme)) {
        return std::nullopt;
    }
    auto token = authorization.substr(scheme.size());
    while (!token.empty() && token.front() == ' ') {
        token.remove_prefix(1);
    }
    const auto presented = digest_of(token);
    // Look at every entry, whatever matches, so the time taken says nothing about which.
    const entry* found = nullptr;
    for (const auto& e : entries_) {
        if (CRYPTO_memcmp(e.digest.data(), presented.data(), presented.size()) == 0) {
            found = &e;
        }
    }
    if (!found) {
        return std::nullopt;
    }
    return found->who;
}

}  // namespace stagegate::admin
