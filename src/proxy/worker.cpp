// The worker: one per data-plane thread. Owns the thread's route snapshot, upstream pool,
// metrics shard, the intrusive list of live sessions (for drain and deadlines) and the
// deadline ticker. Must not touch: request handling (session.cpp), relaying (exchange) or
// mirroring (mirror.cpp); it starts sessions and drops queued mirrors, nothing more.
#include "stagegate/proxy/worker.hpp"
#include "stagegate/proxy/access_log.hpp"

#include "h2_upstream.hpp"
#include "mirror.hpp"
#include "session.hpp"
#include "upstream_pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <random>

namespace stagegate::proxy {

worker::worker(net::io_context& io, settings s, std::uint32_t index)
    : io_(io), settings_(std::move(s)) {
    pool_ = std::make_unique<upstream_pool>(io_, settings_.pool, counters_);
    deadlines_ = std::make_unique<deadline_wheel>(coarse_now());
    h2_ = std::make_unique<h2_upstreams>(*this);
    std::uint64_t seed = std::random_device{}() ^ (std::uint64_t{index} << 32) ^
                         static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
    for (auto& word : rng_state_) {  // splitmix64 seeding for xoshiro256**
        seed += 0x9e3779b97f4a7c15ULL;
        std::uint64_t z = seed;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        word = z ^ (z >> 31);
    }
    if (settings_.access_log) {
        access_log_ = &settings_.access_log->buffer(index);
    }
    pool_->start();
    net::co_spawn(io_.get_executor(), enforce_deadlines(), net::detached);
}

void worker::log_access(const access_entry& e) {
    if (access_log_) {
        access_log_->add(e, static_cast<double>(next_random() >> 11) * 0x1.0p-53);
    }
}

worker::~worker() = default;

std::uint64_t worker::next_random() {
    auto rotl = [](std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
    auto* s = rng_state_;
    const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
    const std::uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void worker::set_routes(std::shared_ptr<const routing::route_snapshot> routes) {
    auto generation = routes ? routes->generation : 0;
    // Aliasing constructor: a control block private to this worker owns the shared one.
    auto holder = std::make_shared<std::shared_ptr<const routing::route_snapshot>>(
        std::move(routes));
    routes_ = std::shared_ptr<const routing::route_snapshot>(holder, holder->get());
    generation_.store(generation, std::memory_order_relaxed);
    tripped_.clear();
}

void worker::link(session_slot& slot) {
    slot.next = sessions_;
    if (sessions_) {
        sessions_->prev = &slot;
    }
    sessions_ = &slot;
    slot.wheel = deadlines_.get();
    deadlines_->schedule(slot, slot.deadline);
    deadlines_->schedule(slot, slot.upstream_deadline);
    if (slot.stream) {  // mirrors have none and are not client connections
        bump(counters_.connections_active);
    }
}

void worker::unlink(session_slot& slot) {
    deadlines_->remove(slot);
    slot.wheel = nullptr;
    if (slot.prev) {
        slot.prev->next = slot.next;
    } else {
        sessions_ = slot.next;
    }
    if (slot.next) {
        slot.next->prev = slot.prev;
    }
    if (!slot.stream) {
        return;
    }
    counters_.connections_active.store(
        counters_.connections_active.load(std::memory_order_relaxed) - 1,
        std::memory_order_relaxed);
}

void worker::begin_drain() {
    draining_ = true;
    keep_alive_ended_ = true;
    while (!mirrors_waiting_.empty()) {
        drop_mirror(*this, *mirrors_waiting_.front());
        mirrors_waiting_.pop_front();
    }
    for (auto* s = sessions_; s; s = s->next) {
        if (s->idle && s->stream) {
            boost::system::error_code ignored;
            s->stream->cancel(ignored);
        }
    }
    pool_->stop();
    h2_->stop();
}

metrics::shard_delta worker::take_metrics(std::vector<endpoint_connections>& connections,
                                          std::vector<predictions::served_record>& served) {
    pool_->gauges(connections);
    h2_->gauges(connections);
    served.swap(served_);
    served_.clear();
    return shard_.take();
}

void worker::abort_all() {
    for (auto* s = sessions_; s; s = s->next) {
        boost::system::error_code ec;
        if (s->stream) {
            s->stream->close(ec);
        }
        if (s->upstream) {
            s->upstream->close(ec);
        }
    }
    h2_->abort_all();
}

task<void> worker::enforce_deadlines() {
    // Coarse on purpose: a deadline is enforced within a tick (10 ms) of passing. The timer is
    // armed once per tick for the whole worker instead of once per socket operation, and each
    // tick looks only at the sessions the deadline wheel has due: looking at every session on
    // every tick cost more than relaying their events with 1,000 open streams.
    net::basic_waitable_timer<clock, net::wait_traits<clock>, executor_type> timer(
        io_.get_executor());
    for (;;) {
        timer.expires_after(deadline_wheel::tick);
        [[maybe_unused]] auto [ec] = co_await timer.async_wait(nothrow_awaitable);
        if (access_log_) {
            access_log_->tick();
        }
        if (draining_ && !sessions_) {
            co_return;
        }
        const auto now = coarse_now();
        deadlines_->expire(now, [&](wheel_entry& e) {
            auto& s = static_cast<session_slot&>(e);
            if (s.deadline <= now && (s.stream || s.on_deadline)) {
                s.deadline = clock::time_point::max();
                s.timed_out = true;
                if (s.stream) {
                    boost::system::error_code ignored;
                    s.stream->cancel(ignored);  // the session may still answer 408
                } else {
                    s.on_deadline->deadline_passed();
                }
            }
            if (s.upstream && s.upstream_deadline <= now) {
                s.upstream_deadline = clock::time_point::max();
                s.upstream_timed_out = true;
                boost::system::error_code ignored;
                s.upstream->close(ignored);  // never reused after a timeout
            }
            // Deadlines moved later since the slot was scheduled: looked at again then.
            if (s.deadline > now) {
                deadlines_->schedule(s, s.deadline);
            }
            if (s.upstream_deadline > now) {
                deadlines_->schedule(s, s.upstream_deadline);
            }
        });
    }
}

void worker::start_session(socket_type socket, net::ssl::context* tls) {
    bump(counters_.connections_accepted);
    boost::system::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    auto remote = socket.remote_endpoint(ec);
    if (ec) {
        return;  // the client is already gone
    }
    if (counters_.connections_active.load(std::memory_order_relaxed) >=
            settings_.limits.max_connections_per_worker ||
        draining_) {
        bump(counters_.connections_shed);
        shard_.record_unrouted(metrics::unrouted_reason::overloaded);
        shed_connection(*this, std::move(socket));
        return;
    }
    start_client_session(*this, std::move(socket), tls, remote.address().to_string());
}

}  // namespace stagegate::proxy
