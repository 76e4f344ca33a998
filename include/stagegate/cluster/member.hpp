// cluster/member: this replica's part in a cluster of stagegate replicas that share one etcd
// and act as one gateway ("state": {"store": "etcd"}).
// Owns: the replica's lease (granted, kept alive, known lost), the leader campaign (a key
// created under the lease only when absent: one leader at a time), the watch on the rollout
// states (re-read and watched again whenever the stream ends, or etcd or the lease was lost),
// whether this replica has synced those states (what /readyz reports), the store revision
// each model is routed by (a state is adopted only when newer: cluster/revisions.hpp), and
// the controller's persistence in etcd, and (as leader) the compaction of etcd's history. Every
// write is a transaction that holds only while this replica's lease owns the leader key, so a
// deposed or partitioned leader cannot write.
// Runs on the control thread; the persistence calls block it for at most the etcd timeout.
// Must not touch: rollout decisions (the controller) or routes (the server applies states).
#pragma once

#include "stagegate/cluster/etcd.hpp"
#include "stagegate/cluster/revisions.hpp"
#include "stagegate/config/config.hpp"
#include "stagegate/rollout/state_store.hpp"

#include <nlohmann/json.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace stagegate::cluster {

class member : public rollout::persistence {
public:
    struct callbacks {
        std::function<void()> elected;  // this replica became the leader
        std::function<void()> deposed;  // it is no longer (lease lost, etcd out of reach)
        // A rollout's state as a leader persisted it, stored at `revision`: only ever one newer
        // than the state this replica routes the model by (never this replica's own write).
        std::function<void(const std::string& model, const nlohmann::json& state,
                           std::int64_t revision)>
            state_changed;
        // An event this replica (as leader) made durable.
        std::function<void(const nlohmann::json& event)> event;
        // Every event any leader stored, as etcd reports it (for the live feed on any replica).
        std::function<void(const nlohmann::json& event)> event_seen;
    };

    member(boost::asio::io_context& io, const config::etcd_store& cfg, std::string admin_url,
           callbacks cb);
    ~member() override;

    void start();
    void stop();

    bool leader() const { return leader_; }
    // etcd answered this replica within the last lease TTL.
    bool connected() const { return connected_; }
    // Whether this replica routes by the rollout states etcd holds: it has read all of them
    // since it started (`synced_once`), and since it last lost etcd, its lease or its watch
    // (`synced`: it is watching from that read on). Until the first read it routes by the
    // config's static weights; after a loss, by the last states it read.
    bool synced_once() const { return synced_once_; }
    bool synced() const { return synced_; }
    // Why it is not synced now ("" when it is).
    const std::string& unsynced_reason() const { return unsynced_reason_; }
    // How long it has not been synced (0 while it is).
    std::chrono::milliseconds unsynced_for() const;
    // The newest store revision this replica routes any model by (0: none read yet).
    std::int64_t routed_revision() const { return revisions_.highest(); }
    // The leader's admin API URL and name, as it published them ("" when unknown).
    const std::string& leader_admin() const { return leader_admin_; }
    const std::string& leader_name() const { return leader_name_; }
    // Reads who leads now (a follower that has not heard yet, such as just after start), then
    // calls `done`.
    void lookup_leader(std::function<void()> done);
    const std::string& replica() const { return replica_; }
    std::uint64_t elections_won() const { return elections_won_; }

    // rollout::persistence, in etcd (only the leader's writes land).
    // The state's key and the event's key in one transaction, guarded by the leader key.
    result<void> record(const std::string& model, const nlohmann::json& state,
                        nlohmann::json event) override;
    result<std::map<std::string, nlohmann::json>> load_all() const override;
    result<void> append_event(nlohmann::json event) override;
    // From etcd (the last 10000 events any leader wrote), read in batches, newest first.
    page events(std::size_t limit, const std::string& model, std::uint64_t before_id,
                std::uint64_t after_id = 0) const override;

    // This replica's counts for the stages in progress, under its lease (a dead replica's
    // expire with it). Skipped while a publication is still on its way, and when they are the
    // ones etcd holds already under this lease (no traffic since): each put is a raft proposal
    // and a revision kept in history.
    void publish_counts(const nlohmann::json& counts);
    // Every other replica's published counts, by replica name.
    void fetch_counts(std::function<void(std::map<std::string, nlohmann::json>)> done);
    std::uint64_t counts_published() const { return counts_published_; }

    // A rollback this replica applied while it led but could not record (etcd out of reach),
    // and can no longer record itself (another replica leads now): left in etcd for the leader
    // to apply and record (`handover` holds the model, candidate and the rollback's event). Not
    // under a lease, so it outlives this replica. `done` says whether etcd took it.
    void hand_over(const std::string& model, const nlohmann::json& handover,
                   std::function<void(bool)> done);
    // The handovers waiting (by model), for the leader; and one taken care of.
    void fetch_handovers(std::function<void(std::map<std::string, nlohmann::json>)> done);
    void drop_handover(const std::string& model);
    // Compactions of etcd's history this replica made as leader, and the revision below which
    // it compacted history last (0: none yet).
    std::uint64_t compactions() const { return compactions_; }
    std::int64_t compacted_to() const { return compacted_to_; }
    // Calls to etcd so far, and the TCP connections they opened (kept alive and reused).
    std::uint64_t etcd_calls() const { return etcd_.calls(); }
    std::uint64_t etcd_connections_opened() const { return etcd_.connections_opened(); }
    // The etcd endpoints, whether each answered its last call (a hung member does not), and
    // how many times this replica moved on from one that stopped answering.
    const std::vector<std::string>& etcd_endpoints() const { return etcd_.endpoints(); }
    bool etcd_endpoint_up(std::size_t i) const { return etcd_.endpoint_up(i); }
    std::uint64_t etcd_failovers() const { return etcd_.failovers(); }

    std::string leader_key() const { return cfg_.prefix + "/leader"; }
    std::string counts_prefix() const { return cfg_.prefix + "/counts/"; }
    std::string rollouts_prefix() const { return cfg_.prefix + "/rollouts/"; }
    std::string events_prefix() const { return cfg_.prefix + "/events/"; }
    std::string handovers_prefix() const { return cfg_.prefix + "/handovers/"; }

private:
    // The JSON objects stored under `prefix`, by the rest of their keys.
    void read_documents(const std::string& prefix,
                        std::function<void(std::map<std::string, nlohmann::json>)> done);
    void schedule_tick(std::chrono::milliseconds after);
    void tick();
    void campaign();
    void claim_leadership();
    void leader_is(const key_value& holder);
    // As leader, every `history` period: compacts etcd to the revision noted one period ago.
    void compact_history(std::int64_t store_revision);
    void watch_events_from(std::int64_t revision);
    void became_leader();
    void lost_leadership(const std::string& why);
    void out_of_reach(const std::string& why);
    void rewatch();
    // Ends the watch so that every state is read again (decisions may have been missed while
    // etcd, the lease or the stream was lost); `why` is what /readyz says meanwhile.
    void resync(const std::string& why);
    void unsynced(const std::string& why);
    void state_seen(const key_value& kv);  // a rollout state read or watched: tell the server
    void rewatch_events();
    // Calls `again` in a moment (a watch ended or etcd did not answer).
    void retry_soon(boost::asio::steady_timer& timer, void (member::*again)());
    nlohmann::json leader_guard() const;
    std::string event_key(std::uint64_t id) const;
    // Puts the event (and, for a decision, the model's state) in one leader-guarded txn.
    result<void> append(nlohmann::json event, const std::string* model,
                        const nlohmann::json* state);

    boost::asio::io_context& io_;
    config::etcd_store cfg_;
    etcd_client etcd_;
    std::string admin_url_;
    std::string replica_;
    callbacks cb_;
    boost::asio::steady_timer timer_;
    boost::asio::steady_timer watch_timer_;
    std::shared_ptr<http_exchange> watch_;
    std::shared_ptr<http_exchange> events_watch_;
    boost::asio::steady_timer events_timer_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    std::int64_t lease_ = 0;
    bool leader_ = false;
    bool connected_ = false;
    bool stopped_ = false;
    bool tick_in_flight_ = false;
    std::chrono::steady_clock::time_point last_answer_{};
    std::string leader_admin_;
    std::string leader_name_;
    std::uint64_t last_event_id_ = 0;
    std::uint64_t elections_won_ = 0;
    std::uint64_t counts_published_ = 0;
    std::int64_t events_revision_ = 0;  // the events watch resumes here
    // The events watch fell behind a compaction: the events since events_revision_ are read
    // from their keys before it watches again.
    bool events_behind_ = false;
    bool publishing_ = false;
    std::string published_counts_;     // the counts document etcd holds for this replica ...
    std::int64_t published_lease_ = 0;  // ... under this lease
    std::chrono::steady_clock::time_point next_history_mark_{};
    std::int64_t history_mark_ = 0;  // the store revision noted one `history` period ago
    std::int64_t compacted_to_ = 0;
    std::uint64_t compactions_ = 0;
    revision_gate revisions_;
    bool synced_ = false;
    bool synced_once_ = false;
    bool told_never_synced_ = false;
    std::string unsynced_reason_ = "the rollout states have not been read from etcd yet";
    std::chrono::steady_clock::time_point unsynced_since_ = std::chrono::steady_clock::now();
};

}  // namespace stagegate::cluster
