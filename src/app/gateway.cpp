#include "stagegate/app/gateway.hpp"

#include "stagegate/admin/admin_server.hpp"

#include <boost/asio/post.hpp>

#include <future>

namespace stagegate::app {

namespace net = boost::asio;

gateway::gateway(config::gateway cfg)
    : cfg_(cfg), data_(control_io_), plane_(control_io_, std::move(cfg), data_) {}

gateway::~gateway() {
    stop();
    wait();
}

result<void> gateway::start() {
    auto started = [&]() -> result<void> {
        if (auto built = data_.build_routes(cfg_); !built) {
            return built;
        }
        // Rollouts apply their traffic over the config's routes before any listener binds.
        if (auto prepared = plane_.prepare(); !prepared) {
            return prepared;
        }
        if (cfg_.admin_listener.enabled) {
            admin_ = std::make_unique<admin::admin_server>(control_io_, plane_);
            auto bound = admin_->listen(cfg_.admin_listener);
            if (!bound) {
                return bound.error();
            }
            admin_port_ = *bound;
        }
        return data_.bind(cfg_);
    }();
    if (!started) {
        // Nothing half-started may keep accepting connections that no thread will serve.
        admin_.reset();
        admin_port_ = 0;
        return started;
    }
    data_.run();
    control_guard_ = std::make_unique<net::executor_work_guard<net::io_context::executor_type>>(
        control_io_.get_executor());
    control_thread_ = std::thread([this] { control_io_.run(); });
    started_ = true;
    std::string admin_url;
    if (const auto& a = cfg_.admin_listener; a.enabled) {
        admin_url = std::string(a.tls ? "https://" : "http://") +
                    (a.address.find(':') != std::string::npos ? "[" + a.address + "]"
                                                               : a.address) +
                    ":" + std::to_string(admin_port_);
    }
    net::post(control_io_, [this, admin_url] { plane_.start(admin_url); });
    return {};
}

void gateway::stop() {
    if (!started_) {
        return;
    }
    std::call_once(stop_once_, [this] {
        // Draining from here on: /readyz answers 503 and answers close their connections;
        // the listeners keep accepting through the drain delay.
        data_.drain(cfg_.client.drain_delay, cfg_.client.drain,
                    [this] { control_guard_.reset(); });
        net::post(control_io_, [this] {
            plane_.stop();
            // The admin API stays up through the delay: probes read "draining", not a
            // refused connection, and the last scrapes still see the traffic.
            admin_stop_.expires_after(cfg_.client.drain_delay);
            admin_stop_.async_wait([this](boost::system::error_code) {
                if (admin_) {
                    admin_->stop();
                }
            });
        });
    });
}

void gateway::wait() {
    data_.join();
    if (control_thread_.joinable()) {
        control_thread_.join();
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

std::vector<server::version_metrics> gateway::read_metrics() {
    auto promise = std::make_shared<std::promise<std::vector<server::version_metrics>>>();
    auto future = promise->get_future();
    net::post(control_io_, [this, promise] {
        data_.collect([this, promise] { promise->set_value(data_.version_metrics_now()); });
    });
    return future.get();
}

nlohmann::json gateway::rollout_status(const std::string& model) {
    return on_control([&, this] { return plane_.rollout_status(model); });
}

result<nlohmann::json> gateway::rollout_command(const std::string& model, const std::string& name,
                                                const nlohmann::json& args,
                                                const std::string& actor,
                                                const std::string& reason) {
    return on_control([&, this] { return plane_.rollout_command(model, name, args, actor, reason); });
}

result<nlohmann::json> gateway::rollout_start(const std::string& model, config::rollout spec,
                                              const std::string& actor,
                                              const std::string& reason) {
    return on_control(
        [&, this] { return plane_.start_rollout(model, std::move(spec), actor, reason); });
}

void gateway::set_config_path(std::string path) {
    config_path_ = path;
    plane_.set_config_path(std::move(path));  // before start(): no thread reads it yet
}

result<nlohmann::json> gateway::reload(const std::string& actor) {
    if (data_.draining()) {
        return error::make("draining", "the gateway is shutting down");
    }
    auto next = config::load_file(config_path_);
    if (!next) {
        return next.error();
    }
    return on_control([&, this] { return plane_.reload(std::move(*next), actor); });
}

}  // namespace stagegate::app
