// JSON from outside, with a nesting limit. See json.hpp.
#include "stagegate/core/json.hpp"

#include <algorithm>

namespace stagegate {

int json_depth(std::string_view text, bool comments) {
    int depth = 0;
    int deepest = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') {
                ++i;  // whatever is escaped, it does not end the string
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (comments && c == '/' && i + 1 < text.size()) {
            if (text[i + 1] == '/') {
                const auto end = text.find('\n', i);
                i = end == std::string_view::npos ? text.size() : end;
                continue;
            }
            if (text[i + 1] == '*') {
                const auto end = text.find("*/", i + 2);
                i = end == std::string_view::npos ? text.size() : end + 1;
                continue;
            }
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            deepest = std::max(deepest, ++depth);
        } else if (c == '}' || c == ']') {
            depth = std::max(0, depth - 1);
        }
    }
    return deepest;
}

nlohmann::json parse_json(std::string_view text, std::string* problem, bool comments) {
    const int depth = json_depth(text, comments);
    if (depth > max_json_depth) {
        if (problem) {
            *problem = "nests " + std::to_string(depth) + " levels deep; at most " +
                       std::to_string(max_json_depth) + " are accepted";
        }
        return nlohmann::json(nlohmann::json::value_t::discarded);
    }
    auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false, comments);
    if (j.is_discarded() && problem) {
        *problem = "not JSON";
    }
    return j;
}

}  // namespace stagegate
