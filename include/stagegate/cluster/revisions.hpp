// cluster/revisions: the store revision (etcd's mod_revision of `rollouts/<model>`) of the
// rollout state each model is routed by on this replica.
// Owns the one rule replicas converge by: a state is adopted only when it was stored at a
// newer revision than the one routed now. A watch event delivered late, a re-read racing the
// watch, or this replica's own write coming back through the watch never puts an older state
// over a newer one. The rollout's own sequence cannot order states: two leaders (one stopped
// across its lease, one elected meanwhile) can each write the same sequence; etcd's revision
// is one counter for the whole store, so it can.
// Must not touch: what a state says (the controller adopts it) or how it is read (member).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

namespace stagegate::cluster {

class revision_gate {
public:
    // Whether `model`'s state stored at `revision` is newer than the one routed now; when it
    // is, it is the one routed from now on.
    bool admit(const std::string& model, std::int64_t revision) {
        auto& routed = routed_[model];
        if (revision <= routed) {
            return false;
        }
        routed = revision;
        highest_ = std::max(highest_, revision);
        return true;
    }

    // A read of the whole store answered by the store `store_id` (etcd's cluster id) at
    // `store_revision`. A store with another id, or whose revision is below one it already
    // answered (reads and watches, never this replica's own writes, which a read sent just
    // before one may answer below), was replaced: restored from a snapshot, or a new etcd at
    // the same address. Every revision is then forgotten so that its states are adopted,
    // instead of none of them ever again. Returns whether that happened.
    bool read_at(const std::string& store_id, std::int64_t store_revision) {
        const bool replaced =
            (!store_id_.empty() && !store_id.empty() && store_id != store_id_) ||
            (store_revision > 0 && store_revision < highest_answered_);
        if (replaced) {
            routed_.clear();
            highest_ = 0;
            highest_answered_ = 0;
        }
        if (!store_id.empty()) {
            store_id_ = store_id;
        }
        saw(store_revision);
        return replaced;
    }
    // The store said it is at `store_revision` (a watch answer).
    void saw(std::int64_t store_revision) {
        highest_answered_ = std::max(highest_answered_, store_revision);
    }

    // The revision `model` is routed by (0: none read yet).
    std::int64_t of(const std::string& model) const {
        auto it = routed_.find(model);
        return it == routed_.end() ? 0 : it->second;
    }
    // The newest revision any model is routed by.
    std::int64_t highest() const { return highest_; }

private:
    std::map<std::string, std::int64_t> routed_;
    std::int64_t highest_ = 0;
    std::int64_t highest_answered_ = 0;  // the newest revision the store answered a read at
    std::string store_id_;
};

}  // namespace stagegate::cluster
