// config/admin_tokens: what an admin token file must hold, checked the same way by
// --check-config (check_files) and at start (the admin API's token table).
// Owns: the rule a token (read with core/secret_file)
// must meet: at least 16 characters, no whitespace, not a placeholder.
// Must not touch: digests and comparison (admin/ keeps only digests of the tokens).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace stagegate::config {

inline constexpr std::size_t min_admin_token_chars = 16;

// The placeholders deploy/kubernetes/secret.yaml ships begin with this (compared ignoring
// case): a token anybody can read in the repository.
inline constexpr std::string_view placeholder_token_prefix = "replace-me";

enum class token_verdict { ok, too_weak, placeholder };

// Whether `token` may guard the admin API: too_weak when shorter than 16 characters or holding
// whitespace, placeholder when it begins with "replace-me".
token_verdict judge_admin_token(std::string_view token);

// What is wrong with the token in `file` (named, the token never), for --check-config and start;
// empty when it is usable. `what` names the token ("admin token \"ops\"").
std::string admin_token_problem(const std::string& what, const std::string& file,
                                const std::optional<std::string>& token);

}  // namespace stagegate::config
