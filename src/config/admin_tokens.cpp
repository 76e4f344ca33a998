#include "stagegate/config/admin_tokens.hpp"

#include <cctype>

namespace stagegate::config {

token_verdict judge_admin_token(std::string_view token) {
    if (token.size() < min_admin_token_chars || token.find_first_of(" \t\r\n") != token.npos) {
        return token_verdict::too_weak;
    }
    bool placeholder = token.size() >= placeholder_token_prefix.size();
    for (std::size_t i = 0; placeholder && i < placeholder_token_prefix.size(); ++i) {
        placeholder = std::tolower(static_cast<unsigned char>(token[i])) ==
                      placeholder_token_prefix[i];
    }
    return placeholder ? token_verdict::placeholder : token_verdict::ok;
}

std::string admin_token_problem(const std::string& what, const std::string& file,
                                const std::optional<std::string>& token) {
    if (!token) {
        return "cannot read the token file of " + what + ": " + file;
    }
    switch (judge_admin_token(*token)) {
    case token_verdict::ok:
        return {};
    case token_verdict::too_weak:
        return "the token file of " + what + " (" + file +
               ") must hold one token of at least 16 characters, no spaces";
    case token_verdict::placeholder:
        return "the token file of " + what + " (" + file +
               ") holds a placeholder (\"replace-me...\", as deploy/kubernetes/secret.yaml "
               "ships): anybody can read it; put a secret token there, e.g. from "
               "`openssl rand -hex 24`";
    }
    return {};
}

}  // namespace stagegate::config
