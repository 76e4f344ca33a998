#include "stagegate/predictions/feedback.hpp"

namespace stagegate::predictions {

void feedback_book::expire(clock::time_point now) {
    while (!order_.empty()) {
        auto it = by_id_.find(order_.front().first);
        if (it == by_id_.end() || it->second.generation != order_.front().second) {
            order_.pop_front();  // replaced or already gone
            continue;
        }
        const bool old = now - it->second.served > ttl_;
        if (!old && by_id_.size() <= capacity_) {
            return;
        }
        if (!it->second.labelled) {
            ++evicted_;
        }
        by_id_.erase(it);
        order_.pop_front();
    }
}

void feedback_book::add(served_record record, clock::time_point now) {
    expire(now);  // an id whose earlier answer is past its TTL is not ambiguous
    const auto generation = next_generation_++;
    auto [it, fresh] = by_id_.try_emplace(record.request_id);
    auto& e = it->second;
    e = entry{record.series, record.predicted, now, false, !fresh, generation};
    order_.emplace_back(std::move(record.request_id), generation);
    expire(now);
}

feedback_book::joined feedback_book::join(std::string_view request_id, clock::time_point now) {
    expire(now);
    joined out;
    auto it = by_id_.find(std::string(request_id));
    if (it == by_id_.end()) {
        return out;
    }
    out.series = it->second.series;
    if (it->second.ambiguous) {
        out.status = join_status::ambiguous;
        return out;
    }
    out.predicted = it->second.predicted;
    out.status = it->second.labelled ? join_status::duplicate : join_status::matched;
    it->second.labelled = true;
    return out;
}

}  // namespace stagegate::predictions
