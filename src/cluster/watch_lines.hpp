// Private to cluster: etcd's watch answers with one JSON document a line, in chunks that may
// split a line anywhere. Owns the reassembly of those lines from core/http_client's pieces.
// Must not touch: what a line says (etcd.cpp reads it).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace stagegate::cluster {

// An http_call::on_body for a stream of lines: hands each whole line, blank ones skipped, to
// `on_line` until that returns false. A line longer than `max_line` stops the stream (the
// watch is then started again). At the body's end (the empty piece) an unterminated last line
// still goes out.
class watch_lines {
public:
    watch_lines(std::size_t max_line, std::function<bool(const std::string& line)> on_line)
        : max_line_(max_line), on_line_(std::move(on_line)) {}

    bool operator()(std::string_view piece) {
        if (piece.empty()) {
            if (!pending_.empty()) {
                on_line_(pending_);
                pending_.clear();
            }
            return false;
        }
        pending_.append(piece);
        for (auto nl = pending_.find('\n'); nl != std::string::npos; nl = pending_.find('\n')) {
            std::string line = pending_.substr(0, nl);
            pending_.erase(0, nl + 1);
            if (!line.empty() && !on_line_(line)) {
                return false;
            }
        }
        return pending_.size() <= max_line_;
    }

private:
    std::size_t max_line_;
    std::function<bool(const std::string& line)> on_line_;
    std::string pending_;
};

}  // namespace stagegate::cluster
