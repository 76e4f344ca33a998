#include "stagegate/server/data_plane.hpp"
#include "stagegate/proxy/access_log.hpp"
#include "stagegate/core/asio.hpp"
#include "stagegate/core/log.hpp"
#include "stagegate/core/tls_files.hpp"
#include "stagegate/server/descriptors.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <cstddef>
#include <string>
#include <thread>

#include <pthread.h>

namespace stagegate::server {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using reuse_port = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

namespace {
using executor_type = net::io_context::executor_type;

// Asio keeps a few freed operation blocks per thread (BOOST_ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE,
// CMakeLists.txt) and hands out the first one large enough. Left to fill itself, the cache
// holds blocks of whatever sizes were freed, and a periodic timer's wait (the deadline ticker,
// the pool sweep) may take the one block a socket read needed: the read then goes to malloc, at
// a moment only timing decides (the allocation test caught one such malloc in a few runs of
// ten). Filled on the worker's thread before any connection with blocks large enough for every
// operation on the request path (the largest, a connect, is 208 B with clang 14), any cached
// block serves any operation, so none goes to malloc while fewer are pending than the cache
// has slots.
void fill_operation_cache() {
    constexpr std::size_t block_size = 512;
    net::recycling_allocator<std::byte> blocks;
    std::array<std::byte*, BOOST_ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE> taken{};
    for (auto& b : taken) {
        b = blocks.allocate(block_size);
    }
    for (auto* b : taken) {
        blocks.deallocate(b, block_size);
    }
}

net::awaitable<void, executor_type> accept_loop(proxy::acceptor_type& acceptor, proxy::worker& w,
                                                net::ssl::context* tls) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(nothrow_awaitable_on<executor_type>);
        if (ec == net::error::operation_aborted || !acceptor.is_open()) {
            co_return;
        }
        if (ec) {
            // EMFILE and friends: back off briefly instead of spinning.
            net::basic_waitable_timer<std::chrono::steady_clock,
                                      net::wait_traits<std::chrono::steady_clock>, executor_type>
                t(acceptor.get_executor(), std::chrono::milliseconds(50));
            co_await t.async_wait(nothrow_awaitable_on<executor_type>);
            continue;
        }
        w.start_session(std::move(socket), tls);
    }
}
}  // namespace

struct data_plane::worker_thread {
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

data_plane::data_plane(net::io_context& control)
    : control_(control), store_(std::make_unique<metrics::store>()) {}

data_plane::~data_plane() {
    join();
}

routing::series_namer data_plane::namer() {
    return [this](std::string_view model, std::string_view version, std::string_view stage) {
        return series_.id_for(model, version, stage);
    };
}

result<void> data_plane::build_routes(const config::gateway& cfg) {
    auto built = routing::build_snapshot(cfg, registry_, namer());
    if (!built) {
        return built.error();
    }
    routes_ = *built;
    return {};
}

result<std::shared_ptr<const routing::route_snapshot>> data_plane::build_snapshot(
    const config::gateway& next, std::uint64_t generation) {
    return routing::build_snapshot(next, registry_, namer(), generation);
}

result<std::shared_ptr<const routing::route_snapshot>> data_plane::with_traffic(
    const routing::route_snapshot& base, std::string_view model,
    const std::map<std::string, std::uint32_t>& weights, std::string stage,
    std::string_view stable, std::string_view watched, std::uint32_t trip_after,
    routing::mirror_plan mirror) {
    return routing::with_traffic(base, model, weights, std::move(stage), namer(), stable, watched,
                                 trip_after, mirror);
}

result<void> data_plane::bind(const config::gateway& cfg) {
    auto bound = bind_workers(cfg);
    if (!bound) {
        // Nothing half-started may keep accepting connections that no thread will serve.
        workers_.clear();
        ports_.clear();
        access_log_.reset();
    }
    return bound;
}

result<void> data_plane::bind_workers(const config::gateway& cfg) {
    // TLS contexts for listeners, shared read-only by every worker.
    std::vector<std::shared_ptr<net::ssl::context>> tls;
    for (std::size_t i = 0; i < cfg.listeners.size(); ++i) {
        const auto& l = cfg.listeners[i];
        if (!l.tls) {
            tls.push_back(nullptr);
            continue;
        }
        auto ctx = tls_server_context(l.tls->cert_file, l.tls->key_file);
        if (!ctx) {
            auto e = ctx.error();
            e.message = "listener " + std::to_string(i) + ": " + e.message;
            return e;
        }
        proxy::offer_h2_alpn(**ctx);
        tls.push_back(std::move(*ctx));
    }

    std::uint32_t n = cfg.workers ? cfg.workers : std::max(1u, std::thread::hardware_concurrency());
    proxy::settings s;
    s.limits = cfg.limit;
    const auto descriptors = raise_descriptor_limit();
    const auto fit = fit_connections(descriptors, n, cfg.limit.max_connections_per_worker);
    s.limits.max_connections_per_worker = fit.per_worker;
    if (fit.capped) {
        log::warn("server",
                  "the descriptor limit cannot hold limits.max_connections_per_worker: capped, "
                  "so clients past it get 503 overloaded instead of waiting on a full table "
                  "(raise RLIMIT_NOFILE, e.g. ulimit -n or LimitNOFILE=, to allow more)",
                  {{"descriptor_limit", std::to_string(descriptors)},
                   {"workers", std::to_string(n)},
                   {"configured", std::to_string(cfg.limit.max_connections_per_worker)},
                   {"per_worker", std::to_string(fit.per_worker)}});
    }
    s.client = cfg.client;
    s.pool = cfg.pool;
    s.record_metrics = cfg.record_metrics;
    if (!cfg.log.access.path.empty()) {
        std::string problem;
        access_log_ = std::make_unique<proxy::access_log_writer>(cfg.log.access, n, problem);
        if (!problem.empty()) {
            access_log_.reset();
            return error::make("access_log_failed", problem);
        }
        s.access_log = access_log_.get();
    }
    // A worker reports a tripped rollout candidate; the control thread decides what it means.
    s.on_broken = [this](std::uint32_t series, std::uint32_t count) {
        net::post(control_, [this, series, count] {
            if (hooks_.version_broken) {
                hooks_.version_broken(series, count);
            }
        });
    };
    ports_.assign(cfg.listeners.size(), 0);
    for (std::uint32_t i = 0; i < n; ++i) {
        auto wt = std::make_unique<worker_thread>();
        wt->proxy = std::make_unique<proxy::worker>(wt->io, s, i);
        wt->proxy->set_routes(routes_);
        for (std::size_t li = 0; li < cfg.listeners.size(); ++li) {
            const auto& l = cfg.listeners[li];
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
    return {};
}

void data_plane::run() {
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        auto& wt = workers_[i];
        wt->guard = std::make_unique<net::executor_work_guard<net::io_context::executor_type>>(
            wt->io.get_executor());
        // Named "stagegate-w<index>" (15 bytes at most), for top -H, perf and gdb, and for the
        // allocation test, which finds the worker's thread by its name.
        auto name = ("stagegate-w" + std::to_string(i)).substr(0, 15);
        wt->thread = std::thread([io = &wt->io, name = std::move(name)] {
            ::pthread_setname_np(::pthread_self(), name.c_str());
            // Asio's cache belongs to the thread running the io_context: fill it from inside.
            net::post(*io, fill_operation_cache);
            io->run();
        });
    }
}

void data_plane::collect(std::function<void()> done) {
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
            net::post(control_, [this, r, delta, gauges = std::move(gauges),
                                    served = std::move(served)]() mutable {
                store_->merge(*delta, metrics::clock::now());
                if (hooks_.served && !served.empty()) {
                    hooks_.served(std::move(served));
                }
                r->gauges.insert(r->gauges.end(), gauges.begin(), gauges.end());
                if (--r->pending == 0) {
                    connection_gauges_ = std::move(r->gauges);
                    r->done();
                }
            });
        });
    }
}

std::vector<version_metrics> data_plane::version_metrics_now() const {
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

void data_plane::publish(std::shared_ptr<const routing::route_snapshot> routes) {
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

std::shared_ptr<const routing::route_snapshot> data_plane::routes() const {
    std::lock_guard lock(routes_mutex_);
    return routes_;
}

result<void> data_plane::set_traffic(std::string_view model,
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

std::uint64_t data_plane::applied_generation() const {
    std::uint64_t lowest = UINT64_MAX;
    for (const auto& wt : workers_) {
        lowest = std::min(lowest, wt->proxy->routes_generation());
    }
    return workers_.empty() ? 0 : lowest;
}

worker_totals data_plane::totals() const {
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

void data_plane::drain(std::chrono::milliseconds delay, std::chrono::milliseconds grace,
                       std::function<void()> done) {
    if (draining_.exchange(true)) {
        return;
    }
    if (delay.count() <= 0) {
        close_listeners(grace, std::move(done));
        return;
    }
    for (auto& wt : workers_) {
        net::post(wt->io, [w = wt.get()] { w->proxy->end_keep_alive(); });
    }
    auto timer = std::make_shared<net::steady_timer>(control_, delay);
    timer->async_wait([this, grace, timer, done = std::move(done)](
                          boost::system::error_code) mutable {
        close_listeners(grace, std::move(done));
    });
}

void data_plane::close_listeners(std::chrono::milliseconds grace, std::function<void()> done) {
    for (auto& wt : workers_) {
        net::post(wt->io, [w = wt.get()] {
            for (auto& a : w->acceptors) {
                boost::system::error_code ec;
                a->close(ec);
            }
            w->proxy->begin_drain();
        });
    }
    auto deadline = std::chrono::steady_clock::now() + grace;
    net::post(control_, [this, deadline, done = std::move(done)]() mutable {
        drain_step(deadline, std::move(done));
    });
}

void data_plane::drain_step(std::chrono::steady_clock::time_point deadline,
                            std::function<void()> done) {
    bool busy = false;
    for (const auto& wt : workers_) {
        busy = busy || wt->proxy->counters().connections_active.load(std::memory_order_relaxed) > 0;
    }
    if (busy && std::chrono::steady_clock::now() < deadline) {
        auto timer = std::make_shared<net::steady_timer>(control_, std::chrono::milliseconds(20));
        timer->async_wait([this, deadline, timer, done = std::move(done)](
                              boost::system::error_code) mutable {
            drain_step(deadline, std::move(done));
        });
        return;
    }
    if (busy) {
        log::warn("server", "drain timeout passed with connections still open: closing them");
    }
    // Also ends mirrored requests still waiting on a candidate: no client waits for those.
    for (auto& wt : workers_) {
        net::post(wt->io, [w = wt->proxy.get()] { w->abort_all(); });
    }
    // With no work left each worker's run() returns by itself; a last resort stops it.
    for (auto& wt : workers_) {
        wt->guard.reset();
    }
    finish_step(std::chrono::steady_clock::now() + std::chrono::seconds(2), std::move(done));
}

void data_plane::finish_step(std::chrono::steady_clock::time_point deadline,
                             std::function<void()> done) {
    bool running = false;
    for (auto& wt : workers_) {
        running = running || !wt->io.stopped();
    }
    if (running && std::chrono::steady_clock::now() < deadline) {
        auto timer = std::make_shared<net::steady_timer>(control_, std::chrono::milliseconds(10));
        timer->async_wait([this, deadline, timer, done = std::move(done)](
                              boost::system::error_code) mutable {
            finish_step(deadline, std::move(done));
        });
        return;
    }
    for (auto& wt : workers_) {
        if (!wt->io.stopped()) {
            wt->forced = true;
            wt->io.stop();
        }
    }
    done();
}

void data_plane::join() {
    for (auto& wt : workers_) {
        if (wt->thread.joinable()) {
            wt->thread.join();
        }
    }
}

}  // namespace stagegate::server
