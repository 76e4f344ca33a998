#include "stagegate/cluster/member.hpp"
#include "stagegate/core/json.hpp"
#include "stagegate/core/log.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace stagegate::cluster {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;

namespace {

std::string default_replica_name() {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) {
        std::snprintf(host, sizeof host, "stagegate");
    }
    return std::string(host) + "-" + std::to_string(::getpid());
}

}  // namespace

member::member(boost::asio::io_context& io, const config::etcd_store& cfg, std::string admin_url,
               callbacks cb)
    : io_(io),
      cfg_(cfg),
      etcd_(cfg),
      admin_url_(cfg.advertise_admin.empty() ? std::move(admin_url) : cfg.advertise_admin),
      replica_(cfg.replica.empty() ? default_replica_name() : cfg.replica),
      cb_(std::move(cb)),
      timer_(io),
      watch_timer_(io),
      events_timer_(io) {}

member::~member() {
    *alive_ = false;
    stop();
}

void member::start() {
    stopped_ = false;
    tick();
    rewatch();
    rewatch_events();
}

void member::stop() {
    if (stopped_) {
        return;
    }
    stopped_ = true;
    timer_.cancel();
    watch_timer_.cancel();
    events_timer_.cancel();
    for (auto* w : {&watch_, &events_watch_}) {
        if (*w) {
            (*w)->cancel();
            w->reset();
        }
    }
    if (lease_ != 0) {
        // Give leadership up at once instead of letting the lease run out (a clean stop).
        (void)etcd_.call_blocking("/v3/lease/revoke", {{"ID", std::to_string(lease_)}});
        lease_ = 0;
    }
    leader_ = false;
}

void member::schedule_tick(std::chrono::milliseconds after) {
    if (stopped_) {
        return;
    }
    timer_.expires_after(after);
    timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
        if (!ec && *alive) {
            tick();
        }
    });
}

// Keeps the lease alive a few times per TTL and campaigns while it is held; a lease that etcd
// no longer knows, or no answer for a whole TTL, ends leadership.
void member::tick() {
    const auto period = std::max(std::chrono::milliseconds(200), cfg_.lease_ttl / 4);
    if (stopped_ || tick_in_flight_) {
        return;
    }
    tick_in_flight_ = true;
    auto after = [this, alive = alive_, period](result<json> r,
                                                 std::function<void(const json&)> ok) {
        if (!*alive) {
            return;
        }
        tick_in_flight_ = false;
        if (!r) {
            if (steady::now() - last_answer_ > cfg_.lease_ttl) {
                out_of_reach(r.error().message);
            }
            schedule_tick(period);
            return;
        }
        last_answer_ = steady::now();
        connected_ = true;
        ok(*r);
        schedule_tick(period);
    };
    etcd_.probe_down_endpoints(io_, cfg_.lease_ttl);
    if (lease_ == 0) {
        const auto ttl_s =
            std::max<std::int64_t>(1, (cfg_.lease_ttl.count() + 999) / 1000);
        etcd_.call(io_, "/v3/lease/grant", {{"TTL", std::to_string(ttl_s)}},
                   [this, after](result<json> r) {
                       after(std::move(r), [this](const json& j) {
                           lease_ = etcd_client::int_of(j, "ID");
                           campaign();
                       });
                   });
        return;
    }
    etcd_.call(io_, "/v3/lease/keepalive", {{"ID", std::to_string(lease_)}},
               [this, after](result<json> r) {
                   after(std::move(r), [this](const json& j) {
                       const auto& res = j.contains("result") ? j["result"] : j;
                       if (etcd_client::int_of(res, "TTL") <= 0) {
                           lease_ = 0;  // expired at etcd: a new lease, a new campaign
                           lost_leadership("its etcd lease expired");
                           // Stopped or cut off for a whole TTL: another leader may have
                           // decided meanwhile, and the watch may not say so for a while.
                           resync("its etcd lease expired: reading the rollout states again");
                           return;
                       }
                       if (leader_) {
                           compact_history(etcd_client::revision_of(res));
                       }
                       campaign();
                   });
               });
}

json member::leader_guard() const {
    return {{"key", base64(leader_key())}, {"target", "LEASE"}, {"lease", std::to_string(lease_)}};
}

// A read first: while someone leads (nearly always) campaigning writes nothing. A read is
// not a raft proposal, while a transaction is one even when its comparison fails (each
// replica campaigned by transaction every TTL/4: 0.8 proposals/s each at a 5 s TTL).
void member::campaign() {
    if (lease_ == 0 || stopped_) {
        return;
    }
    etcd_.call(io_, "/v3/kv/range", etcd_client::range_body(leader_key(), false),
               [this, alive = alive_](result<json> r) {
                   if (!*alive || !r || stopped_) {
                       return;
                   }
                   auto kvs = etcd_client::kvs_of(*r);
                   if (kvs.empty()) {
                       claim_leadership();
                   } else {
                       leader_is(kvs[0]);
                   }
               });
}

// The leader key, created under this replica's lease only when absent (one leader at a time).
void member::claim_leadership() {
    if (lease_ == 0 || stopped_) {
        return;
    }
    const json value = {{"replica", replica_}, {"admin", admin_url_}};
    json body = {
        {"compare", json::array({{{"key", base64(leader_key())},
                                  {"target", "CREATE"},
                                  {"create_revision", "0"}}})},
        {"success", json::array({etcd_client::put_op(leader_key(), value.dump(), lease_)})},
        {"failure", json::array({{{"request_range", etcd_client::range_body(leader_key(), false)}}})}};
    etcd_.call(io_, "/v3/kv/txn", std::move(body), [this, alive = alive_](result<json> r) {
        if (!*alive || !r || stopped_) {
            return;
        }
        if (r->value("succeeded", false)) {
            leader_name_ = replica_;
            leader_admin_ = admin_url_;
            became_leader();
            return;
        }
        key_value holder;
        if (r->contains("responses") && (*r)["responses"].is_array() &&
            !(*r)["responses"].empty()) {
            const auto& range = (*r)["responses"][0].value("response_range", json::object());
            auto kvs = etcd_client::kvs_of(range);
            if (!kvs.empty()) {
                holder = kvs[0];
            }
        }
        leader_is(holder);
    });
}

void member::leader_is(const key_value& holder) {
    auto v = parse_json(holder.value);
    leader_name_ = v.is_object() ? v.value("replica", "") : "";
    leader_admin_ = v.is_object() ? v.value("admin", "") : "";
    if (holder.lease == lease_ && lease_ != 0) {
        became_leader();  // our key, from an earlier round
    } else if (leader_) {
        lost_leadership("another replica holds the leader key");
    }
}

// etcd keeps every revision until compacted: with each replica's counts put every second, its
// database would grow until its quota (2 GiB by default) stops every write, decisions and
// elections included. The leader notes the store's revision once per `history` period and
// compacts to the one it noted a period before, so etcd holds between one and two periods of
// history: watches and re-reads need seconds of it (a watch starts right after the read it
// follows; the events watch resumes from its last event); a watch that falls behind anyway is
// told so (`compact_revision`) and its keys are read again. Not physical: etcd compacts in the
// background and the call does not wait. Independent of etcd's own
// --auto-compaction-retention, which does the same when an operator sets it.
void member::compact_history(std::int64_t store_revision) {
    const auto now = steady::now();
    if (store_revision <= 0 || now < next_history_mark_) {
        return;
    }
    if (history_mark_ > compacted_to_) {
        const auto to = history_mark_;
        etcd_.call(io_, "/v3/kv/compaction",
                   {{"revision", std::to_string(to)}, {"physical", false}},
                   [this, alive = alive_, to](result<json> r) {
                       if (!*alive) {
                           return;
                       }
                       if (r) {
                           ++compactions_;
                       } else if (r.error().message.find("compacted") == std::string::npos) {
                           log::warn("cluster", "cannot compact etcd's history",
                                     {{"revision", std::to_string(to)},
                                      {"error", r.error().message}});
                           return;
                       }
                       // Compacted (by us, or beyond already: another leader, etcd's own).
                       compacted_to_ = std::max(compacted_to_, to);
                   });
    }
    history_mark_ = store_revision;
    next_history_mark_ = now + cfg_.history;
}

void member::lookup_leader(std::function<void()> done) {
    etcd_.call(io_, "/v3/kv/range", etcd_client::range_body(leader_key(), false),
               [this, alive = alive_, done = std::move(done)](result<json> r) {
                   if (!*alive) {
                       return;
                   }
                   if (r && !leader_) {
                       auto kvs = etcd_client::kvs_of(*r);
                       auto v = kvs.empty() ? json() : parse_json(kvs[0].value);
                       if (v.is_object()) {
                           leader_name_ = v.value("replica", "");
                           leader_admin_ = v.value("admin", "");
                       }
                   }
                   done();
               });
}

void member::became_leader() {
    if (leader_) {
        return;
    }
    // Continue the event ids from the last event any leader wrote.
    json body = etcd_client::range_body(events_prefix(), true);
    body["sort_order"] = "DESCEND";
    body["sort_target"] = "KEY";
    body["limit"] = "1";
    auto last = etcd_.call_blocking("/v3/kv/range", std::move(body));
    if (!last) {
        return;  // tried again next round
    }
    last_event_id_ = 0;
    for (const auto& kv : etcd_client::kvs_of(*last)) {
        auto event = parse_json(kv.value);
        if (event.is_object()) {
            last_event_id_ = event.value("id", std::uint64_t{0});
        }
    }
    leader_ = true;
    ++elections_won_;
    history_mark_ = 0;  // notes a revision at its next keepalive, compacts a period later
    next_history_mark_ = steady::now();
    log::info("cluster", "this replica is the leader", {{"replica", replica_}});
    if (cb_.elected) {
        cb_.elected();
    }
}

void member::lost_leadership(const std::string& why) {
    if (!leader_) {
        return;
    }
    leader_ = false;
    log::warn("cluster", "this replica is no longer the leader",
              {{"replica", replica_}, {"why", why}});
    if (cb_.deposed) {
        cb_.deposed();
    }
}

void member::out_of_reach(const std::string& why) {
    connected_ = false;
    // etcd has expired our lease by now, or will before we could write: stop deciding.
    lease_ = 0;
    lost_leadership("etcd out of reach for a whole lease TTL (" + why + ")");
    // A watch over a cut or hung connection may stay open without news for a long time:
    // end it, so that the states are read afresh as soon as etcd answers again.
    resync("etcd out of reach for a whole lease TTL (" + why + ")");
}

void member::unsynced(const std::string& why) {
    if (synced_) {
        synced_ = false;
        unsynced_since_ = steady::now();
        log::warn("cluster", "rollout states not synced with etcd: routing by the last ones read",
                  {{"replica", replica_}, {"why", why}});
    } else if (!synced_once_ && !told_never_synced_) {
        told_never_synced_ = true;  // once: the read is retried every 300 ms
        log::warn("cluster",
                  "cannot read the rollout states from etcd yet: not ready (/readyz 503), "
                  "routing by the config's static weights until it can",
                  {{"replica", replica_}, {"why", why}});
    }
    unsynced_reason_ = why;
}

void member::resync(const std::string& why) {
    unsynced(why);
    if (watch_) {
        watch_->cancel();  // its end reads every state again, then watches from there
    }
}

std::chrono::milliseconds member::unsynced_for() const {
    if (synced_) {
        return std::chrono::milliseconds(0);
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - unsynced_since_);
}

void member::retry_soon(boost::asio::steady_timer& timer, void (member::*again)()) {
    if (stopped_) {
        return;
    }
    timer.expires_after(std::chrono::milliseconds(300));
    timer.async_wait([this, alive = alive_, again](const boost::system::error_code& ec) {
        if (!ec && *alive) {
            (this->*again)();
        }
    });
}

void member::state_seen(const key_value& kv) {
    const auto model = kv.key.substr(rollouts_prefix().size());
    if (!revisions_.admit(model, kv.mod_revision)) {
        return;  // routed by this state or a newer one already (late event, own write, re-read)
    }
    auto state = parse_json(kv.value);
    if (state.is_object() && cb_.state_changed) {
        cb_.state_changed(model, state, kv.mod_revision);
    }
}

void member::rewatch() {
    if (stopped_) {
        return;
    }
    // A watch that just ended (etcd ends idle ones) leaves the replica synced: the re-read
    // follows at once. Only a read that fails, or a lost lease or etcd, makes it unsynced.
    auto again = [this, alive = alive_](const std::string& why) {
        if (*alive) {
            if (!why.empty()) {
                unsynced(why);
            }
            retry_soon(watch_timer_, &member::rewatch);
        }
    };
    etcd_.call(io_, "/v3/kv/range", etcd_client::range_body(rollouts_prefix(), true),
               [this, alive = alive_, again](result<json> r) {
                   if (!*alive || stopped_) {
                       return;
                   }
                   if (!r) {
                       again("etcd did not answer the read of the rollout states (" +
                             r.error().message + ")");
                       return;
                   }
                   const auto store_revision = etcd_client::revision_of(*r);
                   const auto store_id =
                       r->contains("header") ? (*r)["header"].value("cluster_id", "") : "";
                   if (revisions_.read_at(store_id, store_revision)) {
                       log::warn("cluster",
                                 "etcd's revision went back (restored from a snapshot, or a new "
                                 "cluster): adopting its rollout states afresh",
                                 {{"replica", replica_},
                                  {"revision", std::to_string(store_revision)}});
                   }
                   for (const auto& kv : etcd_client::kvs_of(*r)) {
                       state_seen(kv);
                   }
                   if (!synced_) {
                       log::info("cluster", "rollout states synced with etcd",
                                 {{"replica", replica_},
                                  {"revision", std::to_string(store_revision)}});
                   }
                   synced_ = true;
                   synced_once_ = true;
                   unsynced_reason_.clear();
                   // The live feed's "from now on" starts here at the latest: an events read
                   // that fails meanwhile (etcd cut off just after this read) must not move it
                   // past the events stored until it succeeds.
                   if (events_revision_ == 0) {
                       events_revision_ = store_revision + 1;
                   }
                   const auto from = store_revision + 1;
                   watch_ = etcd_.watch(
                       io_, rollouts_prefix(), from,
                       [this, alive](std::vector<watch_event> events, std::int64_t revision) {
                           if (!*alive) {
                               return;
                           }
                           revisions_.saw(revision);
                           for (const auto& e : events) {
                               if (!e.deleted) {
                                   state_seen(e.kv);
                               }
                           }
                       },
                       [this, alive, again](watch_end end) {
                           if (!*alive) {
                               return;
                           }
                           if (end.endpoint_failed) {
                               log::warn("cluster",
                                         "the etcd endpoint the rollout states were watched on "
                                         "stopped answering: reading them again from the next",
                                         {{"replica", replica_}});
                           }
                           if (end.compacted > 0 || end.endpoint_failed) {
                               rewatch();  // now: history is gone, or the watch went silent
                               return;
                           }
                           again("");
                       });
               });
}

void member::publish_counts(const json& counts) {
    if (lease_ == 0 || publishing_ || stopped_) {
        return;
    }
    auto doc = counts.dump();
    if (doc == published_counts_ && lease_ == published_lease_) {
        return;  // etcd holds these under this lease already
    }
    publishing_ = true;
    json body = etcd_client::put_op(counts_prefix() + replica_, doc, lease_)["request_put"];
    etcd_.call(io_, "/v3/kv/put", std::move(body),
               [this, alive = alive_, doc, lease = lease_](result<json> r) mutable {
                   if (!*alive) {
                       return;
                   }
                   publishing_ = false;
                   if (r) {
                       ++counts_published_;
                       published_counts_ = std::move(doc);
                       published_lease_ = lease;
                   }
               });
}

void member::fetch_counts(std::function<void(std::map<std::string, json>)> done) {
    read_documents(counts_prefix(), [this, done = std::move(done)](std::map<std::string, json> all) {
        all.erase(replica_);
        done(std::move(all));
    });
}

// The JSON objects stored under `prefix`, by the rest of their keys (none when etcd did not
// answer: the caller goes on without).
void member::read_documents(const std::string& prefix,
                            std::function<void(std::map<std::string, json>)> done) {
    etcd_.call(io_, "/v3/kv/range", etcd_client::range_body(prefix, true),
               [alive = alive_, prefix, done = std::move(done)](result<json> r) {
                   if (!*alive) {
                       return;
                   }
                   std::map<std::string, json> out;
                   if (r) {
                       for (const auto& kv : etcd_client::kvs_of(*r)) {
                           auto doc = parse_json(kv.value);
                           if (doc.is_object()) {
                               out.emplace(kv.key.substr(prefix.size()), std::move(doc));
                           }
                       }
                   }
                   done(std::move(out));
               });
}

void member::hand_over(const std::string& model, const json& handover,
                       std::function<void(bool)> done) {
    json body = etcd_client::put_op(handovers_prefix() + model, handover.dump(), 0)["request_put"];
    etcd_.call(io_, "/v3/kv/put", std::move(body),
               [alive = alive_, done = std::move(done)](result<json> r) {
                   if (*alive) {
                       done(r.has_value());
                   }
               });
}

void member::fetch_handovers(std::function<void(std::map<std::string, json>)> done) {
    read_documents(handovers_prefix(), std::move(done));
}

void member::drop_handover(const std::string& model) {
    etcd_.call(io_, "/v3/kv/deleterange",
               etcd_client::range_body(handovers_prefix() + model, false), [](result<json>) {});
}

// The live feed: every event stored from now on (a re-watch after a failure resumes where the
// last one left off, so none is skipped or repeated; one that fell behind a compaction reads
// the events stored since from their keys, then watches on).
void member::rewatch_events() {
    if (stopped_) {
        return;
    }
    if (events_revision_ > 0 && !events_behind_) {
        watch_events_from(events_revision_);
        return;
    }
    // First watch: from the store's current revision (history is read with events()).
    json body = etcd_client::range_body(events_prefix(), true);
    if (events_behind_) {
        body["min_mod_revision"] = std::to_string(events_revision_);  // in key (id) order
    } else {
        body["count_only"] = true;
    }
    etcd_.call(io_, "/v3/kv/range", std::move(body), [this, alive = alive_](result<json> r) {
        if (!*alive || stopped_) {
            return;
        }
        if (!r) {
            retry_soon(events_timer_, &member::rewatch_events);
            return;
        }
        const auto after_read = etcd_client::revision_of(*r) + 1;
        if (events_behind_) {
            for (const auto& kv : etcd_client::kvs_of(*r)) {
                auto event = parse_json(kv.value);
                if (event.is_object() && cb_.event_seen) {
                    cb_.event_seen(event);
                }
            }
            events_behind_ = false;
            events_revision_ = after_read;
        } else if (events_revision_ == 0) {
            events_revision_ = after_read;  // unless the states' read set it meanwhile
        }
        watch_events_from(events_revision_);
    });
}

void member::watch_events_from(std::int64_t revision) {
    events_watch_ = etcd_.watch(
        io_, events_prefix(), revision,
        [this, alive = alive_](std::vector<watch_event> events, std::int64_t) {
            if (!*alive) {
                return;
            }
            for (const auto& e : events) {
                events_revision_ = std::max(events_revision_, e.kv.mod_revision + 1);
                auto event = parse_json(e.kv.value);
                if (!e.deleted && event.is_object() && cb_.event_seen) {
                    cb_.event_seen(event);
                }
            }
        },
        [this, alive = alive_](watch_end end) {
            if (!*alive) {
                return;
            }
            if (end.endpoint_failed) {
                rewatch_events();  // from where it was, on the next endpoint
                return;
            }
            if (end.compacted > 0) {
                events_behind_ = true;
                log::info("cluster", "the events watch fell behind etcd's compacted history: "
                                     "reading the events stored since",
                          {{"replica", replica_},
                           {"from_revision", std::to_string(events_revision_)}});
                rewatch_events();
                return;
            }
            retry_soon(events_timer_, &member::rewatch_events);
        });
}

rollout::persistence::page member::events(std::size_t limit, const std::string& model,
                                          std::uint64_t before_id, std::uint64_t after_id) const {
    page out;
    std::vector<json> newest_first;
    std::string end = before_id > 0 ? event_key(before_id) : prefix_end(events_prefix());
    const std::string begin = event_key(after_id + 1);
    constexpr std::size_t batch = 500;
    while (newest_first.size() <= limit) {
        json body = {{"key", base64(begin)},
                     {"range_end", base64(end)},
                     {"sort_order", "DESCEND"},
                     {"sort_target", "KEY"},
                     {"limit", std::to_string(batch)}};
        auto r = etcd_.call_blocking("/v3/kv/range", std::move(body));
        if (!r) {
            break;  // what was read so far; the feed says nothing more
        }
        auto kvs = etcd_client::kvs_of(*r);
        for (const auto& kv : kvs) {
            auto event = parse_json(kv.value);
            if (event.is_object() && (model.empty() || event.value("model", "") == model)) {
                newest_first.push_back(std::move(event));
            }
        }
        if (kvs.size() < batch) {
            break;
        }
        end = kvs.back().key;  // the next batch: below the oldest key read
    }
    out.more = newest_first.size() > limit;
    newest_first.resize(std::min(limit, newest_first.size()));
    out.events.assign(std::make_move_iterator(newest_first.rbegin()),
                      std::make_move_iterator(newest_first.rend()));
    return out;
}

result<std::map<std::string, json>> member::load_all() const {
    auto r = etcd_.call_blocking("/v3/kv/range", etcd_client::range_body(rollouts_prefix(), true));
    if (!r) {
        return r.error();
    }
    std::map<std::string, json> out;
    for (const auto& kv : etcd_client::kvs_of(*r)) {
        auto state = parse_json(kv.value);
        if (state.is_object()) {
            out[kv.key.substr(rollouts_prefix().size())] = std::move(state);
        }
    }
    return result<std::map<std::string, json>>(boost::system::in_place_value, std::move(out));
}

std::string member::event_key(std::uint64_t id) const {
    char digits[24];
    std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(id));
    return events_prefix() + digits;
}

result<void> member::record(const std::string& model, const json& state, json event) {
    return append(std::move(event), &model, &state);
}

result<void> member::append_event(json event) { return append(std::move(event), nullptr, nullptr); }

namespace {

// Whether a failed append's answer (its failure branch read the event's key) shows the event
// stored as it was sent.
bool stored_already(const json& txn_answer, const std::string& event_text) {
    const auto responses = txn_answer.find("responses");
    if (responses == txn_answer.end() || !responses->is_array() || responses->empty()) {
        return false;
    }
    const auto& first = (*responses)[0];
    if (!first.is_object() || !first.contains("response_range")) {
        return false;
    }
    const auto kvs = etcd_client::kvs_of(first["response_range"]);
    return kvs.size() == 1 && kvs[0].value == event_text;
}

}  // namespace

result<void> member::append(json event, const std::string* model, const json* state) {
    if (!leader_ || lease_ == 0) {
        return error::make("not_leader",
                           "replica " + replica_ + " is not the leader" +
                               (leader_name_.empty() ? std::string()
                                                     : " (" + leader_name_ + " is)"));
    }
    constexpr std::uint64_t kept = 10000;  // events kept in etcd
    const std::uint64_t id = last_event_id_ + 1;
    event["id"] = id;
    event["replica"] = replica_;
    const auto key = event_key(id);
    // One transaction: the event and the state it records land together or not at all.
    const auto event_text = event.dump();
    json puts = json::array({etcd_client::put_op(key, event_text)});
    if (state) {
        puts.push_back(etcd_client::put_op(rollouts_prefix() + *model, state->dump()));
    }
    // A failed comparison reads the event's key: a call sent twice (the first on a kept-alive
    // connection etcd closed as it went out, yet applied) finds this very event stored, which
    // is success, not a lost leadership.
    json body = {{"compare", json::array({leader_guard(),
                                          {{"key", base64(key)},
                                           {"target", "CREATE"},
                                           {"create_revision", "0"}}})},
                 {"success", std::move(puts)},
                 {"failure", json::array({{{"request_range",
                                            etcd_client::range_body(key, false)}}})}};
    auto r = etcd_.call_blocking("/v3/kv/txn", std::move(body));
    if (!r) {
        return error::make("state_io_failed", std::string(state ? "the decision" : "the event") +
                                                  " was not stored: " + r.error().message);
    }
    if (!r->value("succeeded", false) && !stored_already(*r, event_text)) {
        lost_leadership("its lease no longer holds the leader key");
        return error::make("not_leader", "replica " + replica_ +
                                             " lost leadership before the decision was stored");
    }
    last_event_id_ = id;
    if (state) {
        // Routed by it already (the controller applies its own decision): its watch event,
        // at this revision, is not news.
        revisions_.admit(*model, etcd_client::revision_of(*r));
    }
    if (id > kept && id % 100 == 0) {
        json trim = {{"key", base64(events_prefix())}, {"range_end", base64(event_key(id - kept))}};
        etcd_.call(io_, "/v3/kv/deleterange", std::move(trim), [](result<json>) {});
    }
    if (cb_.event) {
        cb_.event(event);
    }
    return {};
}

}  // namespace stagegate::cluster
