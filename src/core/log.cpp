#include "stagegate/core/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace stagegate::log {

namespace {

std::atomic<int> lowest_level{static_cast<int>(level::info)};

const char* name_of(level l) {
    switch (l) {
        case level::debug:
            return "debug";
        case level::info:
            return "info";
        case level::warn:
            return "warn";
        case level::error:
            return "error";
    }
    return "info";
}

bool needs_quotes(std::string_view v) {
    if (v.empty()) {
        return true;
    }
    for (char c : v) {
        if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
            return true;
        }
    }
    return false;
}

void append_value(std::string& out, std::string_view v) {
    if (!needs_quotes(v)) {
        out.append(v);
        return;
    }
    out.push_back('"');
    for (char c : v) {
        switch (c) {
            case '"':
                out.append("\\\"");
                break;
            case '\\':
                out.append("\\\\");
                break;
            case '\n':
                out.append("\\n");
                break;
            case '\r':
                out.append("\\r");
                break;
            case '\t':
                out.append("\\t");
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char hex[8];
                    std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
                    out.append(hex);
                } else {
                    out.push_back(c);
                }
        }
    }
    out.push_back('"');
}

std::string utc_now() {
    const auto now = std::chrono::system_clock::now();
    const auto secs = std::chrono::system_clock::to_time_t(now);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
        1000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(millis));
    return buf;
}

}  // namespace

void set_level(level lowest) { lowest_level.store(static_cast<int>(lowest)); }

bool enabled(level l) { return static_cast<int>(l) >= lowest_level.load(); }

std::optional<level> parse_level(std::string_view name) {
    for (level l : {level::debug, level::info, level::warn, level::error}) {
        if (name == name_of(l)) {
            return l;
        }
    }
    return std::nullopt;
}

std::string format_line(level l, std::string_view component, std::string_view message,
                        std::initializer_list<field> fields) {
    std::string line = "time=" + utc_now() + " level=" + name_of(l) + " component=";
    append_value(line, component);
    line.append(" msg=");
    append_value(line, message);
    for (const auto& f : fields) {
        line.push_back(' ');
        line.append(f.key);
        line.push_back('=');
        append_value(line, f.value);
    }
    line.push_back('\n');
    return line;
}

void write(level l, std::string_view component, std::string_view message,
           std::initializer_list<field> fields) {
    if (!enabled(l)) {
        return;
    }
    const auto line = format_line(l, component, message, fields);
    // One write(2): lines from different threads stay whole.
    std::size_t done = 0;
    while (done < line.size()) {
        const auto n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
        if (n <= 0) {
            return;
        }
        done += static_cast<std::size_t>(n);
    }
}

}  // namespace stagegate::log
