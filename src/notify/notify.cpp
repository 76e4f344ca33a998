#include "stagegate/notify/notify.hpp"
#include "stagegate/core/log.hpp"
#include "stagegate/core/secret_file.hpp"

#include <boost/asio/steady_timer.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <deque>
#include <fstream>
#include <sstream>

namespace stagegate::notify {

using json = nlohmann::json;
namespace net = boost::asio;

namespace {
constexpr std::size_t detail_bytes = 256;  // of an answer's body kept for events and status
constexpr auto max_backoff = std::chrono::seconds(60);

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string first_bytes(const std::string& body) {
    return body.size() <= detail_bytes ? body : body.substr(0, detail_bytes) + "...";
}
}  // namespace

std::string hmac_sha256_hex(std::string_view key, std::string_view body) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
        out += hex[mac[i] >> 4];
        out += hex[mac[i] & 15];
    }
    return out;
}

struct webhooks::hook {
    config::webhook cfg;
    http_url url;
    std::string secret;
    std::deque<json> queue;
    bool busy = false;
    std::uint32_t attempt = 0;
    net::steady_timer timer;
    std::shared_ptr<http_exchange> in_flight;
    webhook_counts counts;
    json last = nullptr;

    hook(net::io_context& io, config::webhook c) : cfg(std::move(c)), timer(io) {}

    bool wants(const json& event) const {
        auto in = [](const std::vector<std::string>& list, const std::string& v) {
            return list.empty() || std::find(list.begin(), list.end(), v) != list.end();
        };
        return in(cfg.events, event.value("type", "")) &&
               (cfg.models.empty() || (event.contains("model") && in(cfg.models, event.value("model", ""))));
    }
};

result<std::unique_ptr<webhooks>> webhooks::create(net::io_context& io,
                                                   const std::vector<config::webhook>& hooks) {
    std::unique_ptr<webhooks> out(new webhooks(io));
    for (const auto& c : hooks) {
        auto h = std::make_unique<hook>(io, c);
        auto url = parse_http_url(c.url);
        if (!url) {
            return error::make("bad_webhook", "webhook \"" + c.name + "\": " + url.error().message);
        }
        h->url = *url;
        if (!c.secret_file.empty()) {
            h->secret = read_secret_file(c.secret_file).value_or("");
            if (h->secret.empty()) {
                return error::make("webhook_secret_unreadable", "webhook \"" + c.name +
                                                                    "\": cannot read its secret "
                                                                    "file " + c.secret_file);
            }
        }
        h->counts.name = c.name;
        out->hooks_.push_back(std::move(h));
    }
    return out;
}

webhooks::webhooks(net::io_context& io) : io_(io) {}

webhooks::~webhooks() { stop(); }

void webhooks::publish(const json& event) {
    if (stopped_) {
        return;
    }
    for (auto& hp : hooks_) {
        auto& h = *hp;
        if (!h.wants(event)) {
            continue;
        }
        if (h.queue.size() >= h.cfg.queue_size) {
            ++h.counts.dropped;
            log::warn("notify", "webhook queue full: event dropped",
                      {{"webhook", h.cfg.name},
                       {"queue_size", std::to_string(h.cfg.queue_size)},
                       {"event", std::to_string(event.value("id", 0))}});
            continue;
        }
        h.queue.push_back(event);
        pump(h);
    }
}

void webhooks::pump(hook& h) {
    if (h.busy || h.queue.empty() || stopped_) {
        return;
    }
    h.busy = true;
    h.attempt = 0;
    send(h);
}

void webhooks::send(hook& h) {
    const json& event = h.queue.front();
    http_call call;
    call.method = "POST";
    call.url = h.url;
    call.timeout = h.cfg.timeout;
    call.max_body = 64 * 1024;
    call.body = event.dump(-1, ' ', false, json::error_handler_t::replace);
    ++h.attempt;
    const std::string id = std::to_string(event.value("id", std::uint64_t{0}));
    call.headers = {{"Content-Type", "application/json"},
                    {"X-Stagegate-Event", event.value("type", "")},
                    // The same key on every attempt: receivers drop duplicates by it.
                    {"Idempotency-Key", "stagegate-event-" + id},
                    {"X-Stagegate-Event-Id", id},
                    {"X-Stagegate-Delivery-Attempt", std::to_string(h.attempt)}};
    if (!h.secret.empty()) {
        call.headers.emplace_back("X-Stagegate-Signature",
                                  "sha256=" + hmac_sha256_hex(h.secret, call.body));
    }
    h.in_flight = async_http(io_, std::move(call), [this, &h](result<http_reply> r) {
        h.in_flight.reset();
        if (!stopped_) {
            finish(h, r);
        }
    });
}

void webhooks::finish(hook& h, const result<http_reply>& r) {
    const auto id = h.queue.front().value("id", std::uint64_t{0});
    const bool ok = r && r->status >= 200 && r->status < 300;
    h.last = {{"event_id", id},
              {"attempt", h.attempt},
              {"time_ms", wall_ms()},
              {"ok", ok},
              {"status", r ? r->status : 0},
              {"detail", r ? first_bytes(r->body) : r.error().message}};
    if (ok) {
        ++h.counts.delivered;
    } else {
        ++h.counts.failed_attempts;
        if (h.attempt < h.cfg.max_attempts) {
            auto wait = h.cfg.backoff * (1LL << std::min<std::uint32_t>(h.attempt - 1, 20));
            h.timer.expires_after(std::min<std::chrono::milliseconds>(
                wait, std::chrono::duration_cast<std::chrono::milliseconds>(max_backoff)));
            h.timer.async_wait([this, &h](boost::system::error_code ec) {
                if (!ec && !stopped_) {
                    send(h);
                }
            });
            return;
        }
        ++h.counts.dropped;
        log::warn("notify", "webhook gave up on an event",
                  {{"webhook", h.cfg.name},
                   {"event", std::to_string(id)},
                   {"attempts", std::to_string(h.attempt)},
                   {"detail", h.last["detail"].get<std::string>()}});
    }
    h.queue.pop_front();
    h.busy = false;
    pump(h);
}

json webhooks::status() const {
    json out = json::array();
    for (const auto& h : hooks_) {
        out.push_back({{"name", h->cfg.name},
                       {"url", h->cfg.url},
                       {"signed", !h->secret.empty()},
                       {"queued", h->queue.size()},
                       {"delivered", h->counts.delivered},
                       {"failed_attempts", h->counts.failed_attempts},
                       {"dropped", h->counts.dropped},
                       {"last", h->last}});
    }
    return out;
}

std::vector<webhook_counts> webhooks::counts() const {
    std::vector<webhook_counts> out;
    for (const auto& h : hooks_) {
        auto c = h->counts;
        c.queued = h->queue.size();
        out.push_back(c);
    }
    return out;
}

void webhooks::stop() {
    if (stopped_) {
        return;
    }
    stopped_ = true;
    for (auto& h : hooks_) {
        h->timer.cancel();
        if (h->in_flight) {
            h->in_flight->cancel();
        }
        for (const auto& e : h->queue) {
            log::warn("notify", "shutting down: event not delivered",
                      {{"webhook", h->cfg.name}, {"event", std::to_string(e.value("id", 0))}});
        }
    }
}

checks::~checks() { stop(); }

void checks::run(const std::vector<config::http_check>& list, const json& payload,
                 std::function<void(std::vector<check_result>)> done) {
    struct round {
        std::vector<check_result> results;
        std::size_t pending;
        std::function<void(std::vector<check_result>)> done;
    };
    auto r = std::make_shared<round>(round{{}, list.size(), std::move(done)});
    r->results.resize(list.size());
    if (list.empty()) {
        r->done({});
        return;
    }
    const std::string body = payload.dump(-1, ' ', false, json::error_handler_t::replace);
    for (std::size_t i = 0; i < list.size(); ++i) {
        auto& res = r->results[i];
        res.url = list[i].url;
        res.rollback_on_failure = list[i].rollback_on_failure;
        auto url = parse_http_url(list[i].url);
        if (!url) {  // config validation makes this unreachable; fail safe anyway
            res.detail = url.error().message;
            if (--r->pending == 0) {
                r->done(std::move(r->results));
            }
            continue;
        }
        http_call call;
        call.method = "POST";
        call.url = *url;
        call.timeout = list[i].timeout;
        call.max_body = 64 * 1024;
        call.body = body;
        call.headers = {{"Content-Type", "application/json"}};
        const auto started = std::chrono::steady_clock::now();
        in_flight_.push_back(async_http(
            io_, std::move(call), [r, i, started, alive = std::weak_ptr<bool>(alive_)](
                                      result<http_reply> reply) {
                if (alive.expired()) {
                    return;
                }
                auto& out = r->results[i];
                out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                            started)
                                  .count();
                if (reply) {
                    out.status = reply->status;
                    out.passed = reply->status >= 200 && reply->status < 300;
                    out.detail = first_bytes(reply->body);
                } else {
                    out.detail = reply.error().message;
                }
                if (--r->pending == 0) {
                    r->done(std::move(r->results));
                }
            }));
    }
    // Forget finished exchanges so the list does not grow.
    std::erase_if(in_flight_, [](const auto& w) { return w.expired(); });
}

void checks::stop() {
    alive_ = std::make_shared<bool>(true);  // callbacks holding the old one do nothing
    for (auto& w : in_flight_) {
        if (auto x = w.lock()) {
            x->cancel();
        }
    }
    in_flight_.clear();
}

}  // namespace stagegate::notify
