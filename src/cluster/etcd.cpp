#include "stagegate/cluster/etcd.hpp"
#include "stagegate/core/json.hpp"

#include "watch_lines.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>

namespace stagegate::cluster {

using json = nlohmann::json;

std::string base64(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3), '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(bytes.data()),
                                  static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n < 0 ? 0 : n));
    return out;
}

std::string unbase64(std::string_view text) {
    if (text.empty() || text.size() % 4 != 0) {
        return {};
    }
    std::string out(3 * (text.size() / 4), '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(text.data()),
                                  static_cast<int>(text.size()));
    if (n < 0) {
        return {};
    }
    std::size_t size = static_cast<std::size_t>(n);
    // EVP_DecodeBlock counts the padding as bytes.
    for (std::size_t i = text.size(); i > 0 && text[i - 1] == '=' && size > 0; --i) {
        --size;
    }
    out.resize(size);
    return out;
}

std::string prefix_end(const std::string& prefix) {
    std::string end = prefix;
    while (!end.empty()) {
        auto& last = reinterpret_cast<unsigned char&>(end.back());
        if (last < 0xff) {
            ++last;
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0');  // every key
}

struct etcd_client::endpoint_state {
    struct open_watch {
        std::size_t endpoint;
        std::weak_ptr<http_exchange> exchange;
        std::shared_ptr<watch_end> end;
    };

    std::size_t current = 0;
    std::vector<char> up;  // the last call to each endpoint got an answer
    std::vector<std::chrono::steady_clock::time_point> probed;
    std::uint64_t failovers = 0;
    std::vector<open_watch> watches;

    void answered(std::size_t which) { up[which] = 1; }

    // No answer from `which`: the next call goes to the next endpoint (unless another failure
    // moved on already), and every watch on it ends. A hung member (stopped, or cut off from
    // its peers) keeps a watch open and silent, so the watch alone would not notice for its
    // whole idle limit; any other call there (the keepalive, TTL/4 apart) does within its
    // timeout.
    void failed(std::size_t which) {
        up[which] = 0;
        if (current == which && up.size() > 1) {
            current = (which + 1) % up.size();
            ++failovers;
        }
        std::erase_if(watches, [](const open_watch& w) { return w.exchange.expired(); });
        for (auto& w : watches) {
            auto x = w.exchange.lock();
            if (w.endpoint == which && x && !w.end->endpoint_failed && !w.end->failed_itself) {
                w.end->endpoint_failed = true;
                x->cancel();
            }
        }
    }
};

etcd_client::etcd_client(const config::etcd_store& cfg)
    : cfg_(cfg), endpoints_(std::make_shared<endpoint_state>()) {
    for (const auto& e : cfg_.endpoints) {
        if (auto url = parse_http_url(e, false)) {
            urls_.push_back(*url);
        }
    }
    endpoints_->up.assign(std::max<std::size_t>(1, urls_.size()), 1);
    endpoints_->probed.resize(endpoints_->up.size());
}

bool etcd_client::endpoint_up(std::size_t i) const {
    return i < endpoints_->up.size() && endpoints_->up[i] != 0;
}

std::uint64_t etcd_client::failovers() const { return endpoints_->failovers; }

http_call etcd_client::make_call(const std::string& path, json body) const {
    return make_call_to(endpoints_->current, path, std::move(body));
}

http_call etcd_client::make_call_to(std::size_t endpoint, const std::string& path,
                                    json body) const {
    http_call c;
    c.method = "POST";
    c.url = urls_.empty() ? http_url{} : urls_[endpoint % urls_.size()];
    c.url.target = path;
    c.headers = {{"Content-Type", "application/json"}};
    c.body = body.dump();
    c.timeout = cfg_.timeout;
    c.ca_file = cfg_.ca_file;
    c.cert_file = cfg_.cert_file;
    c.key_file = cfg_.key_file;
    c.max_body = 64 * 1024 * 1024;
    c.keep_alive = pool_;
    return c;
}

namespace {

result<json> answer_of(result<http_reply> r, const std::string& path) {
    if (!r) {
        return error::make("etcd_unreachable", "etcd did not answer " + path + ": " +
                                                   r.error().message);
    }
    auto j = parse_json(r->body);
    if (r->status != 200 || j.is_discarded() || !j.is_object()) {
        std::string why = j.is_object() && j.contains("error") && j["error"].is_string()
                              ? j["error"].get<std::string>()
                              : r->body.substr(0, 200);
        return error::make("etcd_failed",
                           "etcd refused " + path + " (HTTP " + std::to_string(r->status) +
                               "): " + why);
    }
    return result<json>(boost::system::in_place_value, std::move(j));
}

// A watch as its watcher holds it: the watcher's cancel is not news about the endpoint.
class watch_handle : public http_exchange {
public:
    watch_handle(std::shared_ptr<http_exchange> exchange, std::shared_ptr<bool> cancelled)
        : exchange_(std::move(exchange)), cancelled_(std::move(cancelled)) {}
    void cancel() override {
        *cancelled_ = true;
        exchange_->cancel();
    }

private:
    std::shared_ptr<http_exchange> exchange_;
    std::shared_ptr<bool> cancelled_;
};

// Whether the endpoint answered as a working member does: any answer but a 5xx one (etcd's
// gateway answers 503 when the member has no raft leader, 504 when a request timed out).
bool member_answered(const result<http_reply>& r) { return r && r->status < 500; }

}  // namespace

void etcd_client::call(boost::asio::io_context& io, const std::string& path, json body,
                       std::function<void(result<json>)> done) const {
    const std::size_t which = endpoints_->current;
    async_http(io, make_call(path, std::move(body)),
               [endpoints = endpoints_, which, path, done = std::move(done)](result<http_reply> r) {
                   if (member_answered(r)) {
                       endpoints->answered(which);
                   } else {
                       endpoints->failed(which);
                   }
                   done(answer_of(std::move(r), path));
               });
}

result<json> etcd_client::call_blocking(const std::string& path, json body) const {
    const std::size_t which = endpoints_->current;
    auto c = make_call(path, std::move(body));
    c.keep_alive = blocking_pool_;
    auto r = http_blocking(*blocking_io_, std::move(c));
    if (member_answered(r)) {
        endpoints_->answered(which);
    } else {
        endpoints_->failed(which);
    }
    return answer_of(std::move(r), path);
}

void etcd_client::probe_down_endpoints(boost::asio::io_context& io,
                                       std::chrono::milliseconds every) const {
    const auto now = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < endpoints_->up.size() && i < urls_.size(); ++i) {
        if (endpoints_->up[i] || now - endpoints_->probed[i] < every) {
            continue;
        }
        endpoints_->probed[i] = now;
        async_http(io, make_call_to(i, "/v3/maintenance/status", json::object()),
                   [endpoints = endpoints_, i](result<http_reply> r) {
                       if (member_answered(r)) {
                           endpoints->answered(i);
                       }
                   });
    }
}

std::shared_ptr<http_exchange> etcd_client::watch(
    boost::asio::io_context& io, const std::string& prefix, std::int64_t revision,
    std::function<void(std::vector<watch_event>, std::int64_t)> on_events,
    std::function<void(watch_end)> ended) const {
    const std::size_t which = endpoints_->current;
    auto c = make_call("/v3/watch", {{"create_request",
                                      {{"key", base64(prefix)},
                                       {"range_end", base64(prefix_end(prefix))},
                                       {"start_revision", std::to_string(revision)}}}});
    auto end = std::make_shared<watch_end>();
    auto on_line = [on_events = std::move(on_events), end](const std::string& line) {
        auto j = parse_json(line);
        if (!j.is_object() || !j.contains("result") || !j["result"].is_object()) {
            return false;  // an error from etcd: read again
        }
        const auto& r = j["result"];
        // A start revision older than etcd's history: {"compact_revision": N, "canceled": true}.
        end->compacted = int_of(r, "compact_revision");
        if (end->compacted > 0 || r.value("canceled", false)) {
            return false;
        }
        std::vector<watch_event> events;
        if (r.contains("events") && r["events"].is_array()) {
            for (const auto& e : r["events"]) {
                watch_event we;
                we.deleted = e.value("type", "") == "DELETE";
                if (e.contains("kv") && e["kv"].is_object()) {
                    const auto& kv = e["kv"];
                    we.kv.key = unbase64(kv.value("key", ""));
                    we.kv.value = unbase64(kv.value("value", ""));
                    we.kv.create_revision = int_of(kv, "create_revision");
                    we.kv.mod_revision = int_of(kv, "mod_revision");
                    we.kv.lease = int_of(kv, "lease");
                }
                events.push_back(std::move(we));
            }
        }
        on_events(std::move(events), revision_of(r));
        return true;
    };
    c.on_body = watch_lines(c.max_body, std::move(on_line));
    auto cancelled = std::make_shared<bool>(false);
    auto exchange = async_http(
        io, std::move(c),
        [endpoints = endpoints_, which, end, cancelled,
         ended = std::move(ended)](result<http_reply> r) {
            // No answer at all (not even the stream's head, which etcd sends at once), and
            // not cancelled: the endpoint is down, as for any other call. That ends the other
            // watches on it at once, not this one: its watcher retries after a pause (an
            // endpoint that refuses every connection must not be retried in a busy loop).
            if (!r && !*cancelled && !end->endpoint_failed) {
                end->failed_itself = true;
                endpoints->failed(which);
            }
            ended(*end);
        });
    std::erase_if(endpoints_->watches,
                  [](const endpoint_state::open_watch& w) { return w.exchange.expired(); });
    endpoints_->watches.push_back({which, exchange, end});
    return std::make_shared<watch_handle>(std::move(exchange), std::move(cancelled));
}

json etcd_client::range_body(const std::string& key, bool prefix) {
    json j = {{"key", base64(key)}};
    if (prefix) {
        j["range_end"] = base64(prefix_end(key));
    }
    return j;
}

json etcd_client::put_op(const std::string& key, const std::string& value, std::int64_t lease) {
    json put = {{"key", base64(key)}, {"value", base64(value)}};
    if (lease != 0) {
        put["lease"] = std::to_string(lease);
    }
    return {{"request_put", std::move(put)}};
}

std::int64_t etcd_client::int_of(const json& j, const char* field) {
    if (!j.is_object() || !j.contains(field)) {
        return 0;  // etcd leaves out fields that are zero
    }
    const auto& v = j[field];
    if (v.is_number_integer()) {
        return v.get<std::int64_t>();
    }
    if (v.is_string()) {
        const auto& s = v.get_ref<const std::string&>();
        std::int64_t out = 0;
        std::from_chars(s.data(), s.data() + s.size(), out);
        return out;
    }
    return 0;
}

std::int64_t etcd_client::revision_of(const json& answer) {
    return answer.contains("header") ? int_of(answer["header"], "revision") : 0;
}

std::vector<key_value> etcd_client::kvs_of(const json& range_answer) {
    std::vector<key_value> out;
    if (!range_answer.contains("kvs") || !range_answer["kvs"].is_array()) {
        return out;
    }
    for (const auto& kv : range_answer["kvs"]) {
        key_value k;
        k.key = unbase64(kv.value("key", ""));
        k.value = unbase64(kv.value("value", ""));
        k.create_revision = int_of(kv, "create_revision");
        k.mod_revision = int_of(kv, "mod_revision");
        k.lease = int_of(kv, "lease");
        out.push_back(std::move(k));
    }
    return out;
}

}  // namespace stagegate::cluster
