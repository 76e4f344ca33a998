// predictions/feedback: joining delayed ground-truth labels to the answers they judge.
// Owns: served_record (what a worker remembers of an answer: its request id, metrics series
// and prediction) and feedback_book, a bounded, TTL-limited map from request id to record
// that labels are joined against once each. Control thread only; workers hand records over
// with their metrics.
// Must not touch: sockets, metrics, routing.
#pragma once

#include "stagegate/predictions/extract.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>

namespace stagegate::predictions {

using clock = std::chrono::steady_clock;

struct served_record {
    std::string request_id;
    std::uint32_t series = 0;
    prediction predicted;
};

class feedback_book {
public:
    feedback_book(std::size_t capacity, std::chrono::seconds ttl)
        : capacity_(capacity), ttl_(ttl) {}

    // Remembers an answer; the oldest go first when full. Ids are the client's to choose, so
    // one seen again while remembered makes the id ambiguous: no label joins it, or anyone
    // sending traffic could pick which answer a label judges.
    void add(served_record record, clock::time_point now);

    // duplicate: the answer was labelled already; ambiguous: two answers share the id.
    enum class join_status { matched, unmatched, duplicate, ambiguous };
    struct joined {
        join_status status = join_status::unmatched;
        std::uint32_t series = 0;
        prediction predicted;
    };
    // Finds the answer to `request_id` and marks it labelled: a second label is a duplicate.
    joined join(std::string_view request_id, clock::time_point now);

    std::size_t size() const { return by_id_.size(); }
    std::uint64_t evicted() const { return evicted_; }  // before any label came (full or old)
    void set_limits(std::size_t capacity, std::chrono::seconds ttl) {
        capacity_ = capacity;
        ttl_ = ttl;
    }

private:
    struct entry {
        std::uint32_t series = 0;
        prediction predicted;
        clock::time_point served;
        bool labelled = false;
        bool ambiguous = false;  // another answer came with the same id
        std::uint64_t generation = 0;  // which add() this is, to match `order_`
    };
    void expire(clock::time_point now);

    std::size_t capacity_;
    std::chrono::seconds ttl_;
    std::unordered_map<std::string, entry> by_id_;
    // Insertion order for eviction: (id, generation); stale pairs (ids seen again) are
    // skipped, so an ambiguous id lives as long as its last answer would.
    std::deque<std::pair<std::string, std::uint64_t>> order_;
    std::uint64_t next_generation_ = 0;
    std::uint64_t evicted_ = 0;
};

}  // namespace stagegate::predictions
