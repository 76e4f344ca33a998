#include "stagegate/server/gateway.hpp"

#include "admin_server.hpp"
#include "stagegate/cluster/member.hpp"
#include "stagegate/metrics/exposition.hpp"
#include "stagegate/metrics/wire.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cmath>
#include <future>
#include <iostream>

namespace stagegate::server {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using reuse_port = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

namespace {
using executor_type = net::io_context::executor_type;
constexpr auto nothrow_awaitable = net::as_tuple(net::use_awaitable_t<executor_type>{});

net::awaitable<void, executor_type> accept_loop(proxy::acceptor_type& acceptor, proxy::worker& w,
                                                net::ssl::context* tls) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(nothrow_awaitable);
        if (ec == net::error::operation_aborted || !acceptor.is_open()) {
            co_return;
        }
        if (ec) {
            // EMFILE and friends: back off briefly instead of spinning.
            net::basic_waitable_timer<std::chrono::steady_clock,
                                      net::wait_traits<std::chrono::steady_clock>, executor_type>
                t(acceptor.get_executor(), std::chrono::milliseconds(50));
            co_await t.async_wait(nothrow_awaitable);
            continue;
        }
        w.start_session(std::move(socket), tls);
    }
}
}  // namespace

struct gateway::worker_thread {
    // One thread runs this context and no socket is touched from another thread (other threads
    // only post), so descriptor-level locking is dropped; posting stays locked.
    net::io_context io{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    std::unique_ptr<net::executor_work_guard<net::io_context::executor_type>> guard;
    std::unique_ptr<proxy::worker> proxy;
    std::vector<std::unique_ptr<proxy::acceptor_type>> acceptors;
    std::thread thread;
    std::atomic<bool> forced{false};

    ~worker_thread() {
        acceptors.clear();
        if (forced.load()) {
            // io was stopped with coroutine frames still pending; their destructors (run by
            // ~io_context) refer to the worker, so it must outlive them. Only reached when a
            // connection ignored both the drain and the abort; the process is exiting.
            (void)proxy.release();
        }
    }
};

// The controller's view of the gateway: metrics from the store, routes through snapshots.
// Used on the control thread (and during start, before any thread runs).
class gateway::rollout_environment : public rollout::environment {
public:
    explicit rollout_environment(gateway& gw) : gw_(gw) {}

    metrics::series_counts stage_counts(const std::string& model, const std::string& version,
                                        const std::string& stage) override {
        const auto* c = gw_.store_->stage(gw_.series_.id_for(model, version, stage));
        auto counts = c ? *c : metrics::series_counts{};
        // With replicas, the leader judges them all: add what the others published.
        if (auto it = gw_.replica_counts_.find({model, version, stage});
            it != gw_.replica_counts_.end()) {
            counts.merge(it->second);
        }
        return counts;
    }
    void reset_stage(const std::string& model, const std::string& version,
                     const std::string& stage) override {
        gw_.store_->reset_stage(gw_.series_.id_for(model, version, stage), metrics::clock::now());
    }
    result<void> apply(const std::string& model, const std::string& stable,
                       const std::string& candidate, std::uint32_t candidate_bp,
                       const std::string& stage, std::uint32_t trip_after,
                       mirror_settings mirror) override {
        std::map<std::string, std::uint32_t> weights;
        weights[stable] = routing::total_weight - candidate_bp;
        if (candidate != stable) {
            weights[candidate] = candidate_bp;
        } else {
            mirror.bp = 0;  // completed: nothing left to mirror to
        }
        return gw_.set_traffic(model, weights, stage, stable, candidate, trip_after,
                               {mirror.bp, mirror.max_in_flight, mirror.queue});
    }
    std::optional<config::predictions> predictions_of(const std::string& model) override {
        const auto* m = gw_.model_config(model);
        return m ? m->prediction : std::nullopt;
    }
    std::optional<double> version_age_seconds(const std::string& model,
                                              const std::string& version) override {
        const auto* m = gw_.model_config(model);
        if (!m) {
            return std::nullopt;
        }
        for (const auto& v : m->versions) {
            if (v.name == version && v.trained_at) {
                const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count();
                return static_cast<double>(now - *v.trained_at);
            }
        }
        return std::nullopt;
    }
    std::int64_t wall_ms() override {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }
    void run_checks(const std::vector<config::http_check>& checks,
                    const nlohmann::json& payload,
                    std::function<void(std::vector<notify::check_result>)> done) override {
        gw_.checks_->run(checks, payload, std::move(done));
    }

private:
    gateway& gw_;
};

gateway::gateway(config::gateway cfg) : cfg_(std::move(cfg)) {}

gateway::~gateway() {
    stop();
    wait();
}

routing::series_namer gateway::namer() {
    return [this](std::string_view model, std::string_view version, std::string_view stage) {
        return series_.id_for(model, version, stage);
    };
}

result<void> gateway::start() {
    auto started = start_listeners();
    if (!started) {
        // Nothing half-started may keep accepting connections that no thread will serve.
        workers_.clear();
        ports_.clear();
        admin_.reset();
        admin_port_ = 0;
        return started;
    }
    for (auto& wt : workers_) {
        wt->guard = std::make_unique<net::executor_work_guard<net::io_context::executor_type>>(
            wt->io.get_executor());
        wt->thread = std::thread([io = &wt->io] { io->run(); });
    }
    control_guard_ = std::make_unique<net::executor_work_guard<net::io_context::executor_type>>(
        control_io_.get_executor());
    control_thread_ = std::thread([this] { control_io_.run(); });
    started_ = true;
    net::post(control_io_, [this] {
        schedule_collection();
        start_cluster();
        schedule_rollout_tick();
    });
    return {};
}

void gateway::start_cluster() {
    if (!cfg_.etcd) {
        return;
    }
    const auto& a = cfg_.admin_listener;
    std::string admin_url;
    if (a.enabled) {
        admin_url = std::string(a.tls ? "https://" : "http://") +
                    (a.address.find(':') != std::string::npos ? "[" + a.address + "]"
                                                               : a.address) +
                    ":" + std::to_string(admin_port_);
    }
    cluster::member::callbacks cb;
    cb.elected = [this] { lead(); };
    cb.deposed = [this] {
        std::cerr << "stagegate: following: routes change only by the leader's decisions\n";
    };
    cb.state_changed = [this](const std::string& model, const nlohmann::json& state) {
        if (member_->leader()) {
            return;  // our own decision, already applied
        }
        const auto* mc = model_config(model);
        auto adopted = controller_->adopt(model, state,
                                          mc && mc->rollout_spec ? &*mc->rollout_spec : nullptr,
                                          rollout::clock::now());
        if (!adopted) {
            std::cerr << "stagegate: cannot follow the rollout of " << model << ": "
                      << adopted.error().describe() << "\n";
        }
    };
    cb.event = [this](const nlohmann::json& event) {  // the leader's: webhooks, once
        for (const auto& listener : event_listeners_) {
            listener(event);
        }
    };
    cb.event_seen = [this](const nlohmann::json& event) {  // any replica's live feed
        for (const auto& listener : feed_listeners_) {
            listener(event);
        }
    };
    member_ = std::make_unique<cluster::member>(control_io_, *cfg_.etcd, admin_url, std::move(cb));
    controller_->set_store(member_.get());
    member_->start();
}

// Elected: catch up with every persisted decision, then decide from here on (rollouts the
// config declares and no leader has started yet start now).
void gateway::lead() {
    const auto now = rollout::clock::now();
    auto persisted = member_->load_all();
    if (persisted) {
        for (const auto& [model, state] : *persisted) {
            const auto* mc = model_config(model);
            (void)controller_->adopt(model, state,
                                     mc && mc->rollout_spec ? &*mc->rollout_spec : nullptr, now);
        }
    }
    if (auto started = controller_->init(cfg_, now); !started) {
        std::cerr << "stagegate: as the new leader, cannot resume the rollouts: "
                  << started.error().describe() << "\n";
    }
    if (!rollout_timer_) {
        schedule_rollout_tick();
    }
}

// Runs `f` on the control thread and waits for its result. For callers on other threads only:
// from the control thread itself this would wait forever.
template <class F>
auto gateway::on_control(F&& f) {
    using R = decltype(f());
    auto promise = std::make_shared<std::promise<R>>();
    auto future = promise->get_future();
    net::post(control_io_, [promise, fn = std::forward<F>(f)]() mutable { promise->set_value(fn()); });
    return future.get();
}

result<void> gateway::start_rollouts() {
    checks_ = std::make_unique<notify::checks>(control_io_);
    auto hooks = notify::webhooks::create(control_io_, cfg_.webhooks);
    if (!hooks) {
        return hooks.error();
    }
    webhooks_ = std::move(*hooks);
    on_event([this](const nlohmann::json& event) { webhooks_->publish(event); });
    rollout_env_ = std::make_unique<rollout_environment>(*this);
    controller_ = std::make_unique<rollout::controller>(*rollout_env_, nullptr);
    bool any = false;
    for (const auto& m : cfg_.models) {
        any = any || m.rollout_spec.has_value();
    }
    if (!any || cfg_.etcd) {
        // The state directory is opened when the first rollout starts; with etcd, rollouts
        // start once the cluster has elected this replica or it follows the leader.
        return {};
    }
    if (auto opened = ensure_state(); !opened) {
        return opened.error();
    }
    return controller_->init(cfg_, rollout::clock::now());
}

result<void> gateway::ensure_state() {
    if (state_) {
        return {};
    }
    if (cfg_.etcd) {
        if (!member_) {
            return error::make("not_started", "the gateway has not joined its cluster yet");
        }
        return {};
    }
    auto opened = rollout::state_store::open(cfg_.state_dir);
    if (!opened) {
        return opened.error();
    }
    state_.emplace(std::move(*opened));
    state_->set_listener([this](const nlohmann::json& event) {
        for (const auto& listener : event_listeners_) {
            listener(event);
        }
        for (const auto& listener : feed_listeners_) {
            listener(event);
        }
    });
    controller_->set_store(&*state_);
    return {};
}

void gateway::on_event(std::function<void(const nlohmann::json&)> listener) {
    event_listeners_.push_back(std::move(listener));
}

void gateway::on_feed_event(std::function<void(const nlohmann::json&)> listener) {
    feed_listeners_.push_back(std::move(listener));
}

rollout::persistence* gateway::event_log() {
    if (state_) {
        return &*state_;
    }
    return member_.get();
}

result<nlohmann::json> gateway::rollout_start(const std::string& model, config::rollout spec,
                                              const std::string& actor,
                                              const std::string& reason) {
    return on_control([&, this] { return start_rollout_now(model, std::move(spec), actor, reason); });
}

result<nlohmann::json> gateway::start_rollout_now(const std::string& model, config::rollout spec,
                                                  const std::string& actor,
                                                  const std::string& reason) {
    auto snap = routes();
    const auto* m = snap ? snap->find_model(model) : nullptr;
    if (!m) {
        return error::make("unknown_model", "no model named \"" + model + "\"");
    }
    const auto* mc = model_config(model);
    if (auto problems = config::prediction_gate_problems(
            spec, mc ? mc->prediction : std::nullopt, "");
        !problems.empty()) {
        return error{"invalid_rollout", "the rollout's quality gates need what the model does not "
                                        "provide",
                     std::move(problems)};
    }
    if (auto opened = ensure_state(); !opened) {
        return opened.error();
    }
    std::vector<std::string> versions;
    for (const auto& v : m->versions) {
        versions.push_back(v.name);
    }
    const bool was_idle = !rollout_timer_;
    auto started = controller_->start(model, std::move(spec), versions,
                                      m->versions[m->stable].name, actor, reason,
                                      rollout::clock::now());
    if (started && was_idle) {
        schedule_rollout_tick();
    }
    return started;
}

const config::model* gateway::model_config(const std::string& name) const {
    for (const auto& m : cfg_.models) {
        if (m.name == name) {
            return &m;
        }
    }
    return nullptr;
}

void gateway::remember_served(std::vector<predictions::served_record> served) {
    if (served.empty()) {
        return;
    }
    const auto labels = series_.labels();
    const auto now = predictions::clock::now();
    for (auto& record : served) {
        if (record.series >= labels.size()) {
            continue;
        }
        const auto& model = labels[record.series].model;
        auto it = feedback_.find(model);
        if (it == feedback_.end()) {
            const auto* mc = model_config(model);
            if (!mc || !mc->prediction || !mc->prediction->feedback) {
                continue;  // a reload turned feedback off
            }
            it = feedback_
                     .try_emplace(model, mc->prediction->feedback_capacity,
                                  mc->prediction->feedback_ttl)
                     .first;
        }
        it->second.add(std::move(record), now);
    }
}

namespace {

// How a feedback label compares with a predicted label (see predictions::label_hash).
std::optional<std::string> canonical_label(const nlohmann::json& label) {
    if (label.is_string()) {
        auto text = label.dump();
        return text.substr(1, text.size() - 2);
    }
    if (label.is_boolean()) {
        return label.get<bool>() ? "true" : "false";
    }
    if (label.is_number_integer()) {
        return label.dump();
    }
    if (label.is_number_float()) {
        const double v = label.get<double>();
        if (v == std::floor(v) && std::fabs(v) < 9.0e15) {
            return std::to_string(static_cast<long long>(v));
        }
    }
    return std::nullopt;
}

}  // namespace

gateway::feedback_outcome gateway::apply_feedback(const std::vector<feedback_label>& labels) {
    using book = predictions::feedback_book;
    feedback_outcome out;
    const auto now = predictions::clock::now();
    const auto names = series_.labels();
    const auto snap = routes();
    std::map<std::uint32_t, metrics::series_counts> counted;
    for (const auto& item : labels) {
        book::joined j;
        std::string model;
        for (auto& [name, b] : feedback_) {
            j = b.join(item.request_id, now);
            if (j.status != book::join_status::unmatched) {
                model = name;
                break;
            }
        }
        if (j.status == book::join_status::unmatched) {
            ++out.unmatched;
            ++feedback_totals_[""].unmatched;
            continue;
        }
        auto& totals = feedback_totals_[model];
        if (j.status == book::join_status::duplicate) {
            ++out.duplicate;
            ++totals.duplicate;
            continue;
        }
        auto& p = counted[j.series].predictions;
        auto canonical = j.predicted.has_label ? canonical_label(item.label) : std::nullopt;
        if (canonical) {
            ++p.feedback;
            p.correct += predictions::label_hash(*canonical) == j.predicted.label_hash ? 1 : 0;
        } else if (j.predicted.has_value && item.label.is_number()) {
            ++p.valued_feedback;
            p.abs_error_sum += std::fabs(item.label.get<double>() - j.predicted.value);
        } else {
            ++out.unusable;
            ++totals.unusable;
            continue;
        }
        ++out.matched;
        ++totals.matched;
        const auto* m = snap ? snap->find_model(model) : nullptr;
        if (m && j.series < names.size() && names[j.series].stage != m->stage) {
            ++out.late;  // still counted, for the stage that served it
            ++totals.late;
        }
    }
    if (!counted.empty()) {
        metrics::shard_delta delta;
        for (auto& [id, counts] : counted) {
            delta.series.emplace_back(id, std::move(counts));
        }
        store_->merge(delta, metrics::clock::now());
    }
    return out;
}

result<nlohmann::json> gateway::reload(const std::string& actor) {
    if (draining_) {
        return error::make("draining", "the gateway is shutting down");
    }
    auto next = config::load_file(config_path_);
    if (!next) {
        return next.error();
    }
    return on_control([&, this] { return reload_now(std::move(*next), actor); });
}

result<nlohmann::json> gateway::reload_now(config::gateway next, const std::string& actor) {
    auto problems = config::reload_problems(cfg_, next);
    auto current = routes();
    if (!current) {
        return error::make("not_started", "the gateway has no routes yet");
    }
    // Rollouts the controller owns keep their traffic; their versions must survive the reload.
    struct carried {
        std::string model;
        std::map<std::string, std::uint32_t> weights;
        std::string stage;
        std::string stable;
        std::string watched;
        std::uint32_t trip_after = 0;
        routing::mirror_plan mirror;
    };
    std::vector<carried> carry;
    std::vector<std::pair<std::string, config::rollout>> starts;
    std::vector<std::pair<std::string, config::rollout>> updates;
    for (std::size_t mi = 0; mi < next.models.size(); ++mi) {
        const auto& nm = next.models[mi];
        const std::string mpath = "/models/" + std::to_string(mi);
        auto has_version = [&](const std::string& v) {
            for (const auto& ver : nm.versions) {
                if (ver.name == v) {
                    return true;
                }
            }
            return false;
        };
        auto ro = controller_ ? controller_->find(nm.name) : std::nullopt;
        const auto* om = current->find_model(nm.name);
        // A finished rollout keeps its outcome (say, a new stable version) unless the new
        // config sets a split of its own for the model.
        const bool config_split = !(nm.split.weights.size() == 1 &&
                                    nm.split.weights.count(nm.stable));
        if (ro && om && (ro->live() || !config_split)) {
            carried c{nm.name, {}, om->stage, om->versions[om->stable].name, {}, 0, {}};
            bool keep = has_version(c.stable);
            if (om->mirror_version != routing::no_version) {
                const auto& target = om->versions[om->mirror_version];
                keep = keep && has_version(target.name);
                c.watched = target.name;
                c.trip_after = target.trip_after;
                c.mirror = {om->mirror_bp, om->mirror_max_in_flight, om->mirror_queue};
            }
            for (std::size_t v = 0; v < om->versions.size(); ++v) {
                if (om->weights[v] == 0) {
                    continue;
                }
                keep = keep && has_version(om->versions[v].name);
                c.weights[om->versions[v].name] = om->weights[v];
                if (om->versions[v].trip_after) {
                    c.watched = om->versions[v].name;
                    c.trip_after = om->versions[v].trip_after;
                }
            }
            if (ro->live() && !keep) {
                problems.push_back({mpath + "/versions", "the active rollout of " + nm.name +
                                                             " routes to " + ro->stable + " and " +
                                                             ro->candidate +
                                                             ": keep both versions or abort it first"});
            }
            if (keep) {
                carry.push_back(std::move(c));
            }
        }
        if (!nm.rollout_spec) {
            continue;
        }
        if (ro && ro->candidate == nm.rollout_spec->candidate) {
            if (ro->stage_index >= nm.rollout_spec->stages.size()) {
                problems.push_back({mpath + "/rollout/stages",
                                    "the rollout of " + nm.name + " is at stage " +
                                        std::to_string(ro->stage_index + 1) +
                                        ": the new spec must keep at least that many stages"});
            } else {
                updates.emplace_back(nm.name, *nm.rollout_spec);
            }
        } else if (ro && ro->live()) {
            problems.push_back({mpath + "/rollout/candidate",
                                nm.name + " has an active rollout of " + ro->candidate +
                                    ": abort it before starting one of " +
                                    nm.rollout_spec->candidate});
        } else {
            starts.emplace_back(nm.name, *nm.rollout_spec);
        }
    }
    if (controller_) {
        for (const auto& name : controller_->models()) {
            auto ro = controller_->find(name);
            bool present = false;
            for (const auto& nm : next.models) {
                present = present || nm.name == name;
            }
            if (ro && ro->live() && !present) {
                problems.push_back({"/models", "model " + name +
                                                   " has an active rollout: abort it before "
                                                   "removing the model"});
            }
        }
    }
    std::shared_ptr<const routing::route_snapshot> snap;
    if (problems.empty()) {
        auto built = routing::build_snapshot(next, registry_, namer(), current->generation + 1);
        if (!built) {
            return built.error();
        }
        snap = *built;
        for (const auto& c : carry) {
            auto overlaid = routing::with_traffic(*snap, c.model, c.weights, c.stage, namer(),
                                                  c.stable, c.watched, c.trip_after, c.mirror);
            if (!overlaid) {
                problems.push_back({"/models", c.model + ": " + overlaid.error().message});
                continue;
            }
            snap = *overlaid;
        }
    }
    if (!problems.empty()) {
        return error{"invalid_config",
                     "the new config was not applied: " + std::to_string(problems.size()) +
                         " problem(s)",
                     std::move(problems)};
    }
    cfg_.models = std::move(next.models);
    // Remembered answers follow the new feedback limits; a model that stopped taking feedback
    // forgets them.
    for (auto it = feedback_.begin(); it != feedback_.end();) {
        const auto* mc = model_config(it->first);
        if (!mc || !mc->prediction || !mc->prediction->feedback) {
            it = feedback_.erase(it);
            continue;
        }
        it->second.set_limits(mc->prediction->feedback_capacity, mc->prediction->feedback_ttl);
        ++it;
    }
    publish(snap);
    nlohmann::json summary = {{"generation", snap->generation},
                              {"models", snap->models.size()},
                              {"rollouts_started", nlohmann::json::array()},
                              {"rollouts_updated", nlohmann::json::array()}};
    const auto now = rollout::clock::now();
    std::vector<problem> late;
    for (auto& [model, spec] : updates) {
        if (auto updated = controller_->update_spec(model, std::move(spec), now); !updated) {
            late.push_back({"/models", model + ": " + updated.error().message});
        } else if (*updated) {
            summary["rollouts_updated"].push_back(model);
        }
    }
    for (auto& [model, spec] : starts) {
        auto started = start_rollout_now(model, std::move(spec), actor, "config reload");
        if (!started) {
            late.push_back({"/models", model + ": " + started.error().describe()});
        } else {
            summary["rollouts_started"].push_back(model);
        }
    }
    if (!late.empty()) {
        // The routes are applied; a rollout that could not start (state directory trouble)
        // is reported rather than hidden.
        return error{"reload_incomplete",
                     "the new routes are live but some rollouts could not be started or updated",
                     std::move(late)};
    }
    if (state_) {
        (void)state_->append_event({{"time_ms", rollout_env_->wall_ms()},
                                    {"type", "config_reloaded"},
                                    {"actor", actor},
                                    {"generation", snap->generation},
                                    {"text", "config reloaded by " + actor}});
    }
    std::cerr << "stagegate: config reloaded (routes generation " << snap->generation << ")\n";
    return result<nlohmann::json>(boost::system::in_place_value, std::move(summary));
}

void gateway::schedule_rollout_tick() {
    if (!controller_ || (!state_ && !member_)) {
        return;  // no rollout yet: rollout_start schedules the first tick
    }
    rollout_timer_ = std::make_unique<net::steady_timer>(control_io_, controller_->tick_interval());
    rollout_timer_->async_wait([this](boost::system::error_code ec) {
        if (ec || draining_) {
            return;
        }
        // Judge on fresh numbers: merge every worker's shard first.
        collect([this] {
            if (!member_) {
                controller_->on_tick(rollout::clock::now());
                schedule_rollout_tick();
                return;
            }
            if (!member_->leader()) {  // followers route by the leader's decisions
                schedule_rollout_tick();
                return;
            }
            member_->fetch_counts([this](std::map<std::string, nlohmann::json> published) {
                take_replica_counts(published);
                if (member_->leader() && !draining_) {
                    controller_->on_tick(rollout::clock::now());
                }
                schedule_rollout_tick();
            });
        });
    });
}

result<nlohmann::json> gateway::rollout_command(const std::string& model, const std::string& name,
                                                const nlohmann::json& args,
                                                const std::string& actor,
                                                const std::string& reason) {
    return on_control([&, this] {
        return controller_->command(model, name, args, actor, reason, rollout::clock::now());
    });
}

nlohmann::json gateway::cluster_status() const {
    if (!member_) {
        return {{"store", "file"}};
    }
    return {{"store", "etcd"},
            {"replica", member_->replica()},
            {"leader", member_->leader()},
            {"etcd_up", member_->connected()},
            {"leader_replica", member_->leader_name()},
            {"leader_admin", member_->leader_admin()}};
}

void gateway::refresh_leader(std::function<void()> done) {
    if (!member_) {
        done();
        return;
    }
    member_->lookup_leader(std::move(done));
}

nlohmann::json gateway::rollout_status(const std::string& model) {
    return on_control([&, this] { return controller_->status(model, rollout::clock::now()); });
}

result<void> gateway::start_listeners() {
    store_ = std::make_unique<metrics::store>();
    auto built = routing::build_snapshot(cfg_, registry_, namer());
    if (!built) {
        return built.error();
    }
    routes_ = *built;
    if (auto rolled = start_rollouts(); !rolled) {
        return rolled.error();
    }

    // TLS contexts for listeners, shared read-only by every worker.
    std::vector<std::shared_ptr<net::ssl::context>> tls;
    for (std::size_t i = 0; i < cfg_.listeners.size(); ++i) {
        const auto& l = cfg_.listeners[i];
        if (!l.tls) {
            tls.push_back(nullptr);
            continue;
        }
        auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
        boost::system::error_code ec;
        ctx->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                             net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                             net::ssl::context::no_tlsv1_1,
                         ec);
        ctx->use_certificate_chain_file(l.tls->cert_file, ec);
        if (!ec) {
            ctx->use_private_key_file(l.tls->key_file, net::ssl::context::pem, ec);
        }
        if (ec) {
            return error::make("tls_setup_failed", "listener " + std::to_string(i) +
                                                       ": cannot load certificate or key: " +
                                                       ec.message());
        }
        tls.push_back(std::move(ctx));
    }

    std::uint32_t n = cfg_.workers ? cfg_.workers : std::max(1u, std::thread::hardware_concurrency());
    proxy::settings s;
    s.limits = cfg_.limit;
    s.client = cfg_.client;
    s.pool = cfg_.pool;
    s.record_metrics = cfg_.record_metrics;
    // A worker reports a tripped rollout candidate; the controller rolls it back.
    s.on_broken = [this](std::uint32_t series, std::uint32_t count) {
        net::post(control_io_, [this, series, count] {
            auto labels = series_.labels();
            // In a cluster only the leader decides (its own data plane trips count there).
            if (member_ && !member_->leader()) {
                return;
            }
            if (controller_ && series < labels.size()) {
                controller_->on_version_broken(labels[series].model, labels[series].version,
                                               count, rollout::clock::now());
            }
        });
    };
    ports_.assign(cfg_.listeners.size(), 0);
    for (std::uint32_t i = 0; i < n; ++i) {
        auto wt = std::make_unique<worker_thread>();
        wt->proxy = std::make_unique<proxy::worker>(wt->io, s, i);
        wt->proxy->set_routes(routes_);
        for (std::size_t li = 0; li < cfg_.listeners.size(); ++li) {
            const auto& l = cfg_.listeners[li];
            boost::system::error_code ec;
            auto address = net::ip::make_address(l.address, ec);
            if (ec) {
                return error::make("bad_listener", "listener " + std::to_string(li) +
                                                       ": invalid address " + l.address);
            }
            // Worker 0 binds the configured port (maybe 0); the others join the same port.
            tcp::endpoint ep(address, i == 0 ? l.port : ports_[li]);
            auto acceptor = std::make_unique<proxy::acceptor_type>(wt->io.get_executor());
            acceptor->open(ep.protocol(), ec);
            if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
            if (!ec) acceptor->set_option(reuse_port(true), ec);
            if (!ec) acceptor->bind(ep, ec);
            if (!ec) acceptor->listen(net::socket_base::max_listen_connections, ec);
            if (ec) {
                return error::make("bind_failed", "cannot listen on " + l.address + ":" +
                                                      std::to_string(ep.port()) + ": " +
                                                      ec.message());
            }
            if (i == 0) {
                ports_[li] = acceptor->local_endpoint().port();
            }
            net::co_spawn(wt->io.get_executor(), accept_loop(*acceptor, *wt->proxy, tls[li].get()),
                          net::detached);
            wt->acceptors.push_back(std::move(acceptor));
        }
        workers_.push_back(std::move(wt));
    }
    tls_contexts_ = std::move(tls);
    if (cfg_.admin_listener.enabled) {
        admin_ = std::make_unique<admin_server>(control_io_, *this);
        auto bound = admin_->listen(cfg_.admin_listener);
        if (!bound) {
            return bound.error();
        }
        admin_port_ = *bound;
    }
    return {};
}

void gateway::schedule_collection() {
    // Once a second: fills the window's 1 s slots even when nobody is reading.
    collect_timer_ = std::make_unique<net::steady_timer>(control_io_, std::chrono::seconds(1));
    collect_timer_->async_wait([this](boost::system::error_code ec) {
        if (ec || draining_) {
            return;
        }
        collect([this] {
            publish_counts();
            schedule_collection();
        });
    });
}

// Cluster mode: this replica's counts for each stage in progress, for the leader to sum.
void gateway::publish_counts() {
    if (!member_ || !controller_) {
        return;
    }
    nlohmann::json rollouts = nlohmann::json::object();
    for (const auto& model : controller_->models()) {
        auto r = controller_->find(model);
        if (!r || !r->live()) {
            continue;
        }
        nlohmann::json series = nlohmann::json::array();
        auto add = [&](const std::string& version, const std::string& stage) {
            if (const auto* c = store_->stage(series_.id_for(model, version, stage))) {
                series.push_back({{"version", version}, {"stage", stage},
                                  {"counts", metrics::to_wire(*c)}});
            }
        };
        add(r->stable, r->stage_label);
        add(r->candidate, r->stage_label);
        add(r->candidate, config::mirror_stage(r->stage_label));
        rollouts[model] = {{"sequence", r->sequence}, {"series", std::move(series)}};
    }
    if (!rollouts.empty()) {
        member_->publish_counts({{"rollouts", std::move(rollouts)}});
    }
}

// The leader sums the other replicas' counts for the decisions they were taken under (the
// same state sequence); older ones, from before a stage began, are left out.
void gateway::take_replica_counts(const std::map<std::string, nlohmann::json>& published) {
    replica_counts_.clear();
    for (const auto& [replica, doc] : published) {
        const auto& rollouts = doc.value("rollouts", nlohmann::json::object());
        if (!rollouts.is_object()) {
            continue;
        }
        for (const auto& [model, r] : rollouts.items()) {
            auto mine = controller_->find(model);
            if (!mine || !r.is_object() || r.value("sequence", std::uint64_t{0}) != mine->sequence ||
                !r.contains("series") || !r["series"].is_array()) {
                continue;
            }
            for (const auto& s : r["series"]) {
                if (!s.is_object() || !s.contains("version") || !s["version"].is_string() ||
                    !s.contains("stage") || !s["stage"].is_string() || !s.contains("counts")) {
                    continue;
                }
                auto& into = replica_counts_[{model, s["version"].get<std::string>(),
                                              s["stage"].get<std::string>()}];
                (void)metrics::add_from_wire(s["counts"], into);
            }
        }
    }
}

void gateway::collect(std::function<void()> done) {
    struct round {
        std::size_t pending;
        std::vector<proxy::worker::endpoint_connections> gauges;
        std::function<void()> done;
    };
    auto r = std::make_shared<round>(round{workers_.size(), {}, std::move(done)});
    if (workers_.empty()) {
        r->done();
        return;
    }
    for (auto& wt : workers_) {
        net::post(wt->io, [this, w = wt->proxy.get(), r] {
            std::vector<proxy::worker::endpoint_connections> gauges;
            std::vector<predictions::served_record> served;
            auto delta = std::make_shared<metrics::shard_delta>(w->take_metrics(gauges, served));
            net::post(control_io_, [this, r, delta, gauges = std::move(gauges),
                                    served = std::move(served)]() mutable {
                store_->merge(*delta, metrics::clock::now());
                remember_served(std::move(served));
                r->gauges.insert(r->gauges.end(), gauges.begin(), gauges.end());
                if (--r->pending == 0) {
                    connection_gauges_ = std::move(r->gauges);
                    r->done();
                }
            });
        });
    }
}

std::string gateway::render_prometheus() const {
    metrics::exposition_input in;
    in.metrics = store_.get();
    in.labels = series_.labels();
    auto snap = routes();
    // Connection gauges are per endpoint id: attribute them to every version using it.
    std::map<std::uint32_t, std::pair<double, double>> by_endpoint;
    for (const auto& g : connection_gauges_) {
        by_endpoint[g.endpoint].first += g.active;
        by_endpoint[g.endpoint].second += g.idle;
    }
    if (snap) {
        for (const auto& m : snap->models) {
            for (std::size_t v = 0; v < m.versions.size(); ++v) {
                const auto& ver = m.versions[v];
                in.weights.push_back({m.name, ver.name, "",
                                      static_cast<double>(m.weights[v]) / routing::total_weight});
                double active = 0;
                double idle = 0;
                for (const auto& ep : ver.endpoints) {
                    auto it = by_endpoint.find(ep.id);
                    if (it != by_endpoint.end()) {
                        active += it->second.first;
                        idle += it->second.second;
                    }
                }
                in.connections.push_back({m.name, ver.name, "active", active});
                in.connections.push_back({m.name, ver.name, "idle", idle});
            }
        }
    }
    if (member_) {
        in.cluster = metrics::exposition_input::cluster_gauge{
            member_->replica(), member_->leader(), member_->connected(),
            static_cast<double>(member_->elections_won()),
            static_cast<double>(member_->counts_published())};
    }
    if (webhooks_) {
        for (const auto& c : webhooks_->counts()) {
            in.webhooks.push_back({c.name, static_cast<double>(c.delivered),
                                   static_cast<double>(c.failed_attempts),
                                   static_cast<double>(c.dropped), static_cast<double>(c.queued)});
        }
    }
    for (const auto& [model, t] : feedback_totals_) {
        for (auto [outcome, value] : {std::pair{"matched", t.matched}, {"late", t.late},
                                      {"unmatched", t.unmatched}, {"duplicate", t.duplicate},
                                      {"unusable", t.unusable}}) {
            if (value > 0) {
                in.feedback.push_back({model, outcome, static_cast<double>(value)});
            }
        }
    }
    // Roles, ages and rollouts: what alerts and dashboards join on.
    const auto wall_now = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
    std::map<std::string, std::string> candidates;
    if (controller_) {
        in.rollouts = controller_->gauges(rollout::clock::now());
        for (const auto& r : in.rollouts) {
            if (r.phase == "progressing" || r.phase == "paused") {
                candidates[r.model] = r.candidate;
            }
        }
    }
    for (const auto& m : cfg_.models) {
        if (m.max_version_age) {
            in.max_ages[m.name] =
                static_cast<double>(std::chrono::seconds(*m.max_version_age).count());
        }
        for (const auto& v : m.versions) {
            if (v.trained_at) {
                in.ages.push_back({m.name, v.name, "", static_cast<double>(wall_now - *v.trained_at)});
            }
        }
    }
    if (snap) {
        for (const auto& m : snap->models) {
            for (std::size_t v = 0; v < m.versions.size(); ++v) {
                const auto& name = m.versions[v].name;
                auto c = candidates.find(m.name);
                const char* role = v == m.stable                                   ? "stable"
                                   : c != candidates.end() && c->second == name ? "candidate"
                                                                                : "idle";
                in.roles.push_back({m.name, name, role, 1});
            }
        }
    }
    auto t = totals();
    in.downstream_active = static_cast<double>(t.connections_active);
    in.downstream_accepted = static_cast<double>(t.connections_accepted);
    in.downstream_shed = static_cast<double>(t.connections_shed);
    in.build_version = STAGEGATE_VERSION;
    in.build_commit = STAGEGATE_COMMIT;
    return metrics::render_prometheus(in);
}

std::vector<version_metrics> gateway::version_metrics_now() const {
    std::vector<version_metrics> out;
    auto snap = routes();
    if (!snap) {
        return out;
    }
    auto now = metrics::clock::now();
    for (const auto& m : snap->models) {
        for (const auto& v : m.versions) {
            version_metrics vm;
            vm.model = m.name;
            vm.version = v.name;
            vm.stage = m.stage;
            if (const auto* c = store_->stage(v.series)) {
                vm.since_stage_start = *c;
            }
            vm.stage_started = store_->stage_started(v.series);
            vm.window = store_->window(v.series, now);
            out.push_back(std::move(vm));
        }
    }
    return out;
}

std::vector<version_metrics> gateway::read_metrics() {
    auto promise = std::make_shared<std::promise<std::vector<version_metrics>>>();
    auto future = promise->get_future();
    net::post(control_io_, [this, promise] {
        collect([this, promise] { promise->set_value(version_metrics_now()); });
    });
    return future.get();
}

void gateway::publish(std::shared_ptr<const routing::route_snapshot> routes) {
    {
        std::lock_guard lock(routes_mutex_);
        if (routes_ && routes->generation <= routes_->generation) {
            return;
        }
        routes_ = routes;
    }
    for (auto& wt : workers_) {
        net::post(wt->io, [w = wt->proxy.get(), routes] {
            if (!w->routes() || w->routes()->generation < routes->generation) {
                w->set_routes(routes);
            }
        });
    }
}

std::shared_ptr<const routing::route_snapshot> gateway::routes() const {
    std::lock_guard lock(routes_mutex_);
    return routes_;
}

result<void> gateway::set_traffic(std::string_view model,
                                  const std::map<std::string, std::uint32_t>& weights,
                                  std::string stage, std::string_view stable,
                                  std::string_view watched, std::uint32_t trip_after,
                                  routing::mirror_plan mirror) {
    std::shared_ptr<const routing::route_snapshot> next;
    {
        std::lock_guard lock(routes_mutex_);
        if (!routes_) {
            return error::make("not_started", "the gateway has no routes yet");
        }
        auto built =
            routing::with_traffic(*routes_, model, weights, std::move(stage), namer(), stable,
                                  watched, trip_after, mirror);
        if (!built) {
            return built.error();
        }
        next = *built;
    }
    publish(std::move(next));
    return {};
}

std::uint64_t gateway::applied_generation() const {
    std::uint64_t lowest = UINT64_MAX;
    for (const auto& wt : workers_) {
        lowest = std::min(lowest, wt->proxy->routes_generation());
    }
    return workers_.empty() ? 0 : lowest;
}

worker_totals gateway::totals() const {
    worker_totals t;
    for (const auto& wt : workers_) {
        const auto& c = wt->proxy->counters();
        auto get = [](const std::atomic<std::uint64_t>& a) {
            return a.load(std::memory_order_relaxed);
        };
        t.connections_accepted += get(c.connections_accepted);
        t.connections_active += get(c.connections_active);
        t.connections_shed += get(c.connections_shed);
        t.upstream_connects += get(c.upstream_connects);
        t.upstream_connect_failures += get(c.upstream_connect_failures);
    }
    return t;
}

void gateway::stop() {
    if (!started_) {
        return;
    }
    std::call_once(stop_once_, [this] {
        draining_ = true;
        net::post(control_io_, [this] {
            if (collect_timer_) {
                collect_timer_->cancel();
            }
            if (rollout_timer_) {
                rollout_timer_->cancel();
            }
            if (webhooks_) {
                webhooks_->stop();
            }
            if (checks_) {
                checks_->stop();
            }
            if (admin_) {
                admin_->stop();
            }
            if (member_) {
                member_->stop();  // gives leadership up now rather than when the lease runs out
            }
        });
        for (auto& wt : workers_) {
            net::post(wt->io, [w = wt.get()] {
                for (auto& a : w->acceptors) {
                    boost::system::error_code ec;
                    a->close(ec);
                }
                w->proxy->begin_drain();
            });
        }
        auto deadline = std::chrono::steady_clock::now() + cfg_.client.drain;
        net::post(control_io_, [this, deadline] { drain_step(deadline); });
    });
}

void gateway::drain_step(std::chrono::steady_clock::time_point deadline) {
    bool busy = false;
    for (const auto& wt : workers_) {
        busy = busy || wt->proxy->counters().connections_active.load(std::memory_order_relaxed) > 0;
    }
    if (busy && std::chrono::steady_clock::now() < deadline) {
        auto timer = std::make_shared<net::steady_timer>(control_io_, std::chrono::milliseconds(20));
        timer->async_wait([this, deadline, timer](boost::system::error_code) {
            drain_step(deadline);
        });
        return;
    }
    if (busy) {
        std::cerr << "stagegate: drain timeout passed with connections still open; closing them\n";
    }
    // Also ends mirrored requests still waiting on a candidate: no client waits for those.
    for (auto& wt : workers_) {
        net::post(wt->io, [w = wt->proxy.get()] { w->abort_all(); });
    }
    // With no work left each worker's run() returns by itself; a last resort stops it.
    for (auto& wt : workers_) {
        wt->guard.reset();
    }
    finish_step(std::chrono::steady_clock::now() + std::chrono::seconds(2));
}

void gateway::finish_step(std::chrono::steady_clock::time_point deadline) {
    bool running = false;
    for (auto& wt : workers_) {
        running = running || !wt->io.stopped();
    }
    if (running && std::chrono::steady_clock::now() < deadline) {
        auto timer = std::make_shared<net::steady_timer>(control_io_, std::chrono::milliseconds(10));
        timer->async_wait([this, deadline, timer](boost::system::error_code) {
            finish_step(deadline);
        });
        return;
    }
    for (auto& wt : workers_) {
        if (!wt->io.stopped()) {
            wt->forced = true;
            wt->io.stop();
        }
    }
    control_guard_.reset();
}

void gateway::wait() {
    for (auto& wt : workers_) {
        if (wt->thread.joinable()) {
            wt->thread.join();
        }
    }
    if (control_thread_.joinable()) {
        control_thread_.join();
    }
}

}  // namespace stagegate::server
