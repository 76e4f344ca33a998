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

// log::info("component", "message", {{"key", value}}) and its siblings: write at that level.
template <level L>
struct writer_at {
    void operator()(std::string_view component, std::string_view message,
                    std::initializer_list<field> fields = {}) const {
        write(L, component, message, fields);
    }
};
inline constexpr writer_at<level::debug> debug{};
inline constexpr writer_at<level::info> info{};
inline constexpr writer_at<level::warn> warn{};
inline constexpr writer_at<level::error> error{};

}  // namespace stagegate::log
