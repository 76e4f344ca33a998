#include "admin_auth.hpp"

#include "stagegate/config/admin_tokens.hpp"
#include "stagegate/core/secret_file.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cctype>

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
        const auto token = read_secret_file(t.file);
        const auto problem = config::admin_token_problem("admin token \"" + t.name + "\"",
                                                         t.file, token);
        if (!token) {
            return error::make("token_unreadable", problem);
        }
        switch (config::judge_admin_token(*token)) {
        case config::token_verdict::ok:
            break;
        case config::token_verdict::too_weak:
            return error::make("token_too_weak", problem);
        case config::token_verdict::placeholder:
            return error::make("token_placeholder", problem);
        }
        table.entries_.push_back(
            {digest_of(*token), principal{t.name, t.role == config::admin_role::operator_}});
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
