#pragma once
// Which of a worker's sessions have a deadline due: a timing wheel of 10 ms buckets. The
// worker's ticker asks it each tick for the entries whose bucket has come, so a tick costs
// what is due, not what is open: looking at every open session on every tick cost more than
// relaying their events with 1,000 open streams (loadtest/streams, RESULTS.md run 26).
//
// Entries are scheduled lazily. A deadline set later than the entry's bucket leaves it where
// it is (a stream pushes its idle deadline forward on every event: a compare, no list work);
// the ticker, reaching that bucket, finds the deadline not yet due and schedules it again. A
// deadline set earlier moves the entry (an unlink and a link). Deadlines past the wheel's
// horizon (about 10 s) sit in its last bucket and are rescheduled from there.
// One thread (the worker's); no Asio here, so the unit tests drive it with their own times.
#include <array>
#include <chrono>
#include <cstdint>

namespace stagegate::proxy {

struct wheel_entry {
    static constexpr std::uint64_t unscheduled = UINT64_MAX;
    // A copy would share the original's links: the wheel would walk into either.
    wheel_entry() = default;
    wheel_entry(const wheel_entry&) = delete;
    wheel_entry& operator=(const wheel_entry&) = delete;
    wheel_entry* wheel_prev = nullptr;
    wheel_entry* wheel_next = nullptr;
    std::uint64_t wheel_tick = unscheduled;  // the bucket's tick it waits in
};

class deadline_wheel {
public:
    using clock = std::chrono::steady_clock;
    static constexpr auto tick = std::chrono::milliseconds(10);
    static constexpr std::size_t buckets = 1024;

    // `start`: no entry is looked at before it (the first tick expire takes).
    explicit deadline_wheel(clock::time_point start)
        : next_tick_(static_cast<std::uint64_t>(start.time_since_epoch() / tick)) {}

    // Makes sure `e` is looked at no later than the tick `at` falls in (at once, the next
    // tick, for a time already past). No list work when it already waits for that or earlier.
    void schedule(wheel_entry& e, clock::time_point at) {
        if (at == clock::time_point::max()) {
            return;
        }
        const auto since = at.time_since_epoch();
        const auto t = static_cast<std::uint64_t>((since + tick - clock::duration(1)) / tick);
        if (t >= e.wheel_tick) {
            return;
        }
        reschedule(e, t);
    }

    // Takes `e` out (a session that ended).
    void remove(wheel_entry& e);

    // Takes out, one at a time, each entry whose bucket came by `now`, and calls visit(entry)
    // on it; visit may schedule it again (also remove others). Buckets are visited in order.
    template <class Visit>
    void expire(clock::time_point now, Visit&& visit) {
        const auto now_tick = static_cast<std::uint64_t>(now.time_since_epoch() / tick);
        if (now_tick < next_tick_) {
            return;
        }
        if (now_tick - next_tick_ >= buckets) {
            next_tick_ = now_tick - buckets + 1;  // every entry is due: each bucket once
        }
        while (next_tick_ <= now_tick) {
            auto& head = heads_[next_tick_ % buckets];
            ++next_tick_;  // entries scheduled meanwhile land from the next tick on
            while (head) {
                auto* e = head;
                unlink(*e);
                visit(*e);
            }
        }
    }

    bool empty() const { return count_ == 0; }
    std::size_t size() const { return count_; }

private:
    void reschedule(wheel_entry& e, std::uint64_t t);
    void unlink(wheel_entry& e);

    std::array<wheel_entry*, buckets> heads_{};
    std::uint64_t next_tick_;  // the first tick whose bucket expire has not taken yet
    std::size_t count_ = 0;
};

}  // namespace stagegate::proxy
