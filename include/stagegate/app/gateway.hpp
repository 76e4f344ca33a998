// app: one gateway process, composed. Owns the control thread and its io_context, and wires
// the data plane (server/), the control plane (control/) and the admin API (admin/) together:
// start order, stop order, and blocking entry points for threads other than the control
// thread (main's signal handlers, tests, tools).
// Must not touch: what each part does; this file only connects them.
#pragma once

#include "stagegate/config/config.hpp"
#include "stagegate/control/plane.hpp"
#include "stagegate/core/error.hpp"
#include "stagegate/server/data_plane.hpp"

#include <nlohmann/json.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace stagegate::admin {
class admin_server;
}

namespace stagegate::app {

class gateway {
public:
    explicit gateway(config::gateway cfg);
    ~gateway();
    gateway(const gateway&) = delete;
    gateway& operator=(const gateway&) = delete;

    // Builds routes, prepares the rollouts, binds every listener and starts the threads.
    result<void> start();
    // Graceful stop: close listeners, let in-flight requests finish (up to the drain timeout),
    // then stop every thread. Thread-safe, idempotent, returns at once.
    void stop();
    // Blocks until every thread has exited.
    void wait();

    boost::asio::io_context& control() { return control_io_; }
    server::data_plane& data() { return data_; }
    // Control thread only.
    control::plane& plane() { return plane_; }

    // --- The data plane (any thread) --------------------------------------------------------
    const std::vector<std::uint16_t>& ports() const { return data_.ports(); }
    std::size_t worker_count() const { return data_.worker_count(); }
    server::worker_totals totals() const { return data_.totals(); }
    std::shared_ptr<const routing::route_snapshot> routes() const { return data_.routes(); }
    void publish(std::shared_ptr<const routing::route_snapshot> routes) {
        data_.publish(std::move(routes));
    }
    result<void> set_traffic(std::string_view model,
                             const std::map<std::string, std::uint32_t>& weights,
                             std::string stage, std::string_view stable = {},
                             std::string_view watched = {}, std::uint32_t trip_after = 0,
                             routing::mirror_plan mirror = {}) {
        return data_.set_traffic(model, weights, std::move(stage), stable, watched, trip_after,
                                 mirror);
    }
    std::uint64_t applied_generation() const { return data_.applied_generation(); }
    bool draining() const { return data_.draining(); }
    // The bound admin port (0 when the admin listener is disabled).
    std::uint16_t admin_port() const { return admin_port_; }

    // --- Blocking calls onto the control thread (never from the control thread itself) -----
    // Merges every worker's shard, then reads each version's numbers.
    std::vector<server::version_metrics> read_metrics();
    nlohmann::json rollout_status(const std::string& model);
    result<nlohmann::json> rollout_command(const std::string& model, const std::string& name,
                                           const nlohmann::json& args, const std::string& actor,
                                           const std::string& reason);
    result<nlohmann::json> rollout_start(const std::string& model, config::rollout spec,
                                         const std::string& actor, const std::string& reason);
    // The file `reload()` reads (main sets it).
    void set_config_path(std::string path);
    // Loads the config file and applies it (SIGHUP).
    result<nlohmann::json> reload(const std::string& actor);

private:
    template <class F>
    auto on_control(F&& f);

    config::gateway cfg_;  // as started: listeners, admin, drain
    std::string config_path_;
    boost::asio::io_context control_io_{1};
    std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
        control_guard_;
    std::thread control_thread_;
    server::data_plane data_;
    control::plane plane_;
    std::unique_ptr<admin::admin_server> admin_;
    boost::asio::steady_timer admin_stop_{control_io_};  // the admin API outlives the drain delay
    std::uint16_t admin_port_ = 0;
    std::once_flag stop_once_;
    bool started_ = false;
};

}  // namespace stagegate::app
