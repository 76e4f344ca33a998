// core/json: parsing JSON that comes from outside the process (admin API bodies, config files
// and reloads, rollout specs, the state directory, etcd values and answers, webhook answers)
// with a nesting limit. nlohmann's parser is iterative, but every walk over the parsed tree
// (dump, comparison, copy) recurses once per level: 100,000 nested brackets in a 200 KB admin
// body overflowed the stack and took the whole gateway down. Nothing this project reads
// nests more than a dozen levels; 64 leaves room for any config or event.
// Must not touch: anything but text.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace stagegate {

inline constexpr int max_json_depth = 64;

// The deepest nesting of objects and arrays in `text` (brackets inside strings and, with
// `comments`, inside // and /* */ comments do not count), without building anything.
int json_depth(std::string_view text, bool comments = false);

// `text` parsed; a discarded value when it is not JSON or nests deeper than max_json_depth,
// with the reason in `problem` when given ("not JSON" or the depth it reached).
nlohmann::json parse_json(std::string_view text, std::string* problem = nullptr,
                          bool comments = false);

}  // namespace stagegate
