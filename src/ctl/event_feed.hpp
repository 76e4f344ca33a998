// Private to ctl: the admin API's event feed (/api/v1/events) is Server-Sent Events. Owns
// reading its events from core/http_client's pieces of the body: "data:" lines, joined, and
// a blank line ending each event. Must not touch: what an event says (ctl.cpp prints it).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace stagegate::ctl {

// An http_call::on_body for an event stream: hands each event's data to `on_event` until that
// returns false. Other fields (id:, retry:, comments) are not needed and are skipped; an event
// the stream ends in the middle of is dropped.
class event_feed {
public:
    explicit event_feed(std::function<bool(const std::string& data)> on_event)
        : on_event_(std::move(on_event)) {}

    bool operator()(std::string_view piece) {
        pending_.append(piece);
        for (auto nl = pending_.find('\n'); nl != std::string::npos; nl = pending_.find('\n')) {
            std::string line = pending_.substr(0, nl);
            pending_.erase(0, nl + 1);
            if (!line.empty() && line.back() == '\r') {
                line.pop_back();
            }
            if (line.empty()) {
                if (!data_.empty() && !on_event_(data_)) {
                    return false;
                }
                data_.clear();
            } else if (line.rfind("data:", 0) == 0) {
                auto value = line.substr(5);
                if (!value.empty() && value.front() == ' ') {
                    value.erase(0, 1);
                }
                if (!data_.empty()) {
                    data_ += '\n';
                }
                data_ += value;
            }
        }
        return true;
    }

private:
    std::function<bool(const std::string& data)> on_event_;
    std::string pending_;
    std::string data_;  // the event being read
};

}  // namespace stagegate::ctl
