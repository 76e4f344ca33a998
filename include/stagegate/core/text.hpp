// core/text: percent-encoding (RFC 3986) shared by the admin API, its CLI and the state files.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace stagegate {

// Letters and digits stay, as does every character in `keep`; all else becomes %XX.
std::string percent_encode(std::string_view text, std::string_view keep = "-_.~");

// %XX -> byte; with `plus_is_space` (query strings) '+' -> ' '. nullopt when a % is not
// followed by two hex digits.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space);

}  // namespace stagegate
