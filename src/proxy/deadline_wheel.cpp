#include "proxy/deadline_wheel.hpp"

#include <algorithm>

namespace stagegate::proxy {

void deadline_wheel::reschedule(wheel_entry& e, std::uint64_t t) {
    if (e.wheel_tick != wheel_entry::unscheduled) {
        unlink(e);
    }
    // Never into a bucket expire has taken already (a time past waits for the next tick), nor
    // past the horizon: the last bucket is one before the next tick's, whose entries expire
    // is taking while it lets visits schedule (it must not meet them again in that bucket).
    t = std::clamp(t, next_tick_, next_tick_ + buckets - 2);
    auto& head = heads_[t % buckets];
    e.wheel_tick = t;
    e.wheel_prev = nullptr;
    e.wheel_next = head;
    if (head) {
        head->wheel_prev = &e;
    }
    head = &e;
    ++count_;
}

void deadline_wheel::remove(wheel_entry& e) {
    if (e.wheel_tick != wheel_entry::unscheduled) {
        unlink(e);
    }
}

void deadline_wheel::unlink(wheel_entry& e) {
    if (e.wheel_prev) {
        e.wheel_prev->wheel_next = e.wheel_next;
    } else {
        heads_[e.wheel_tick % buckets] = e.wheel_next;
    }
    if (e.wheel_next) {
        e.wheel_next->wheel_prev = e.wheel_prev;
    }
    e.wheel_prev = e.wheel_next = nullptr;
    e.wheel_tick = wheel_entry::unscheduled;
    --count_;
}

}  // namespace stagegate::proxy
