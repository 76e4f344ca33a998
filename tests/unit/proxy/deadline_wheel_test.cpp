// The deadline wheel with times the test chooses: an entry is handed back once its tick has
// come and never before its deadline, a deadline moved later is left in place (and handed
// back early, for the caller to schedule again), one moved earlier is moved, removal, the
// horizon, and a ticker that fell far behind.
#include "proxy/deadline_wheel.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace stagegate::proxy {
namespace {

using clock = deadline_wheel::clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A point in time far from the clock's epoch, like a real steady_clock reading.
const clock::time_point t0 = clock::time_point(std::chrono::hours(1000));

struct entry : wheel_entry {
    explicit entry(int n = 0) : name(n) {}
    clock::time_point deadline = clock::time_point::max();
    int name;
    int visits = 0;  // times expire handed it over, due or not
};

// Sets the entry's deadline and tells the wheel, as session_slot's setters do.
void set_deadline(deadline_wheel& w, entry& e, clock::time_point due) {
    e.deadline = due;
    w.schedule(e, e.deadline);
}

// The names of the entries expire hands back at `now`; each is rescheduled at its deadline
// when that is still to come (what the worker does).
std::vector<int> expire(deadline_wheel& w, clock::time_point now) {
    std::vector<int> got;
    w.expire(now, [&](wheel_entry& e) {
        auto& x = static_cast<entry&>(e);
        ++x.visits;
        if (x.deadline <= now) {
            got.push_back(x.name);
            x.deadline = clock::time_point::max();
        } else {
            w.schedule(x, x.deadline);
        }
    });
    return got;
}

TEST(DeadlineWheel, AnEntryComesBackWithinATickOfItsDeadlineAndNeverBefore) {
    deadline_wheel w(t0);
    entry a(1);
    set_deadline(w, a, t0 + milliseconds(25));
    EXPECT_EQ(w.size(), 1u);
    for (auto at = t0; at < a.deadline; at += milliseconds(1)) {
        EXPECT_TRUE(expire(w, at).empty()) << (at - t0).count();
    }
    EXPECT_EQ(a.visits, 0);  // not even looked at early
    // Its tick (30 ms) comes within 10 ms of the deadline.
    EXPECT_EQ(expire(w, t0 + milliseconds(30)), std::vector<int>{1});
    EXPECT_EQ(a.visits, 1);
    EXPECT_TRUE(w.empty());
}

TEST(DeadlineWheel, ADeadlineMovedLaterStaysInPlaceAndIsRescheduledFromThere) {
    deadline_wheel w(t0);
    entry a(1);
    set_deadline(w, a, t0 + milliseconds(20));
    const auto tick = a.wheel_tick;
    set_deadline(w, a, t0 + milliseconds(500));  // pushed back, as a stream's idle deadline is
    EXPECT_EQ(a.wheel_tick, tick);  // no list work
    EXPECT_TRUE(expire(w, t0 + milliseconds(30)).empty());
    EXPECT_EQ(w.size(), 1u);  // looked at, and waiting again
    EXPECT_TRUE(expire(w, t0 + milliseconds(499)).empty());
    EXPECT_EQ(expire(w, t0 + milliseconds(500)), std::vector<int>{1});
}

TEST(DeadlineWheel, ADeadlineMovedEarlierIsMoved) {
    deadline_wheel w(t0);
    entry a(1);
    set_deadline(w, a, t0 + seconds(5));
    set_deadline(w, a, t0 + milliseconds(40));
    EXPECT_EQ(expire(w, t0 + milliseconds(40)), std::vector<int>{1});
}

TEST(DeadlineWheel, ARemovedEntryIsNeverHandedBack) {
    deadline_wheel w(t0);
    entry a(1), b(2), c(3);
    for (auto* e : {&a, &b, &c}) {
        set_deadline(w, *e, t0 + milliseconds(15));  // one bucket
    }
    w.remove(b);
    w.remove(b);  // twice is harmless
    EXPECT_EQ(w.size(), 2u);
    auto got = expire(w, t0 + milliseconds(20));
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, (std::vector<int>{1, 3}));
}

TEST(DeadlineWheel, AVisitMayRemoveAnotherEntryOfItsBucket) {
    deadline_wheel w(t0);
    entry a, b;
    set_deadline(w, a, t0 + milliseconds(15));
    set_deadline(w, b, t0 + milliseconds(15));
    int visits = 0;
    w.expire(t0 + milliseconds(20), [&](wheel_entry& e) {
        ++visits;
        w.remove(&e == &a ? static_cast<wheel_entry&>(b) : static_cast<wheel_entry&>(a));
    });
    EXPECT_EQ(visits, 1);
    EXPECT_TRUE(w.empty());
}

TEST(DeadlineWheel, DeadlinesPastTheHorizonWaitInItsLastBucketAndComeBackOnTime) {
    deadline_wheel w(t0);
    entry a(1);
    const auto due = t0 + seconds(60);  // the wheel spans about 10 s
    set_deadline(w, a, due);
    int handed_back = 0;
    for (auto at = t0; at <= due + seconds(1); at += milliseconds(10)) {
        if (!expire(w, at).empty()) {
            EXPECT_GE(at, due);
            EXPECT_LT(at, due + milliseconds(20));
            ++handed_back;
        }
    }
    EXPECT_EQ(handed_back, 1);
    EXPECT_LE(a.visits, 7);  // looked at about once per horizon (10.24 s) on the way
    EXPECT_TRUE(w.empty());
}

TEST(DeadlineWheel, APastDeadlineComesBackAtTheNextTick) {
    deadline_wheel w(t0);
    EXPECT_TRUE(expire(w, t0 + milliseconds(100)).empty());
    entry a(1);
    set_deadline(w, a, t0 + milliseconds(50));  // already past
    EXPECT_EQ(expire(w, t0 + milliseconds(110)), std::vector<int>{1});
}

TEST(DeadlineWheel, ATickerFarBehindHandsBackEverythingDueOnce) {
    deadline_wheel w(t0);
    std::vector<entry> entries(300);
    for (int i = 0; i < 300; ++i) {
        entries[i].name = i;
        set_deadline(w, entries[i], t0 + milliseconds(37 * i));  // over about 11 s
    }
    // The ticker was held up for a minute: each entry once, all of them.
    auto got = expire(w, t0 + seconds(60));
    std::sort(got.begin(), got.end());
    ASSERT_EQ(got.size(), 300u);
    for (int i = 0; i < 300; ++i) {
        EXPECT_EQ(got[i], i);
    }
    EXPECT_TRUE(w.empty());
}

TEST(DeadlineWheel, ManyEntriesEachComeBackWithinATickOfTheirDeadline) {
    deadline_wheel w(t0);
    std::vector<entry> entries(2000);
    for (int i = 0; i < 2000; ++i) {
        entries[i].name = i;
        // to 15 s, shuffled
        set_deadline(w, entries[i], t0 + milliseconds(1 + (i * 7919) % 15000));
    }
    std::vector<clock::time_point> seen(2000);
    for (auto at = t0; at <= t0 + seconds(16); at += milliseconds(10)) {
        for (int name : expire(w, at)) {
            seen[name] = at;
        }
    }
    for (int i = 0; i < 2000; ++i) {
        EXPECT_EQ(entries[i].deadline, clock::time_point::max()) << i;  // handed back
        const auto due = t0 + milliseconds(1 + (i * 7919) % 15000);
        EXPECT_GE(seen[i], due) << i;
        EXPECT_LT(seen[i], due + milliseconds(20)) << i;
    }
}

}  // namespace
}  // namespace stagegate::proxy
