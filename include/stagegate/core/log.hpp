// core/log: the process's one logger. Owns the level filter and the line format: one logfmt
// line per entry (time, level, component, msg, then the entry's own fields), written to
// stderr with a single write(2) so lines from different threads never interleave.
// Not for the request path (it formats and writes): workers count, the control side logs.
// Must not touch: anything else; command-line tools print their own usage and errors.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace stagegate::log {

enum class level { debug, info, warn, error };

struct field {
    std::string_view key;
    std::string value;
};

void set_level(level lowest);  // entries below it are dropped (default: info)
bool enabled(level l);
std::optional<level> parse_level(std::string_view name);  // debug | info | warn | error

// `time=… level=… component=… msg="…" key=value …`; values with spaces, quotes or '=' are
// quoted and escaped.
std::string format_line(level l, std::string_view component, std::string_view message,
                        std::initializer_list<field> fields = {});
void write(level l, std::string_view component, std::string_view message,
           std::initializer_list<field> fields = {});

inline void debug(std::string_view component, std::string_view message,
                  std::initializer_list<field> fields = {}) {
    write(level::debug, component, message, fields);
}
inline void info(std::string_view component, std::string_view message,
                 std::initializer_list<field> fields = {}) {
    write(level::info, component, message, fields);
}
inline void warn(std::string_view component, std::string_view message,
                 std::initializer_list<field> fields = {}) {
    write(level::warn, component, message, fields);
}
inline void error(std::string_view component, std::string_view message,
                  std::initializer_list<field> fields = {}) {
    write(level::error, component, message, fields);
}

}  // namespace stagegate::log
