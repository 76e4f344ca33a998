// Private to server: who is calling the admin API. Tokens are read once from the files the
// config names; only their SHA-256 digests are kept, and a presented token is compared with
// every digest in constant time, so neither timing nor a memory dump gives a token away.
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/core/error.hpp"

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stagegate::admin {

struct principal {
    std::string name;  // the token's name: the actor recorded in the event log
    bool can_operate = false;
};

class token_table {
public:
    // Reads every token file; fails naming the file (never the token) when one is missing,
    // empty, shorter than 16 characters or a placeholder (config/admin_tokens.hpp).
    static result<token_table> load(const std::vector<config::admin_token>& tokens);

    // No tokens configured: every caller is the anonymous operator (loopback only; config
    // validation enforces that).
    bool open() const { return entries_.empty(); }

    // The principal for an Authorization header value ("Bearer <token>"), or nullopt.
    std::optional<principal> authenticate(std::string_view authorization) const;

private:
    struct entry {
        std::array<unsigned char, 32> digest{};
        principal who;
    };
    std::vector<entry> entries_;
};

}  // namespace stagegate::admin
