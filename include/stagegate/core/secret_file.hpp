// core/secret_file: reading a one-line secret (an admin token, a webhook's HMAC key) from the
// file a config or a command line names. Shared by the gateway's config and admin API, its
// webhooks, and stagegatectl, so all of them trim and fail alike.
#pragma once

#include <optional>
#include <string>

namespace stagegate {

// The file's content less trailing whitespace (a newline an editor adds); nullopt when it
// cannot be opened or read.
std::optional<std::string> read_secret_file(const std::string& path);

}  // namespace stagegate
