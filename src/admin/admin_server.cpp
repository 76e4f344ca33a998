#include "stagegate/admin/admin_server.hpp"
#include "stagegate/core/asio.hpp"
#include "stagegate/core/json.hpp"
#include "stagegate/core/log.hpp"
#include "stagegate/core/tls_files.hpp"

#include "admin_auth.hpp"
#include "admin_error.hpp"
#include "ui_assets.hpp"
#include "stagegate/core/http_client.hpp"
#include "stagegate/core/text.hpp"
#include "stagegate/control/plane.hpp"
#include "stagegate/rollout/report.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <deque>
#include <functional>
#include <list>
#include <span>

namespace stagegate::admin {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;

namespace {

using request_t = http::request<http::string_body>;
using response_t = http::response<http::string_body>;

// Server-Sent Events: how many events may wait for a slow follower before it is cut off (it
// reconnects with Last-Event-ID and loses nothing), and how often an idle feed says it lives.
constexpr std::size_t sse_queue_limit = 1024;
constexpr auto sse_heartbeat = std::chrono::seconds(15);
constexpr std::size_t sse_replay_limit = 1000;

// A rollout's report reads its model's events back to the rollout's start, a page at a time,
// and stops after this many (the report then says its history is not complete).
constexpr std::size_t report_page_size = 1000;
constexpr std::size_t report_events_max = 20000;

// Marks a change a follower forwarded to the leader: it is never forwarded twice.
constexpr std::string_view forwarded_header = "X-Stagegate-Forwarded-By";

response_t json_response(http::status status, const json& body, unsigned version) {
    response_t res{status, version};
    res.set(http::field::server, "stagegate-admin");
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    res.body() = body.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
    return res;
}

response_t error_json(admin_error e, std::string message, unsigned version,
                      const std::vector<problem>& problems = {}) {
    json err = {{"code", wire_code(e)}, {"message", std::move(message)}};
    if (!problems.empty()) {
        json list = json::array();
        for (const auto& p : problems) {
            list.push_back({{"path", p.path}, {"message", p.message}});
        }
        err["path"] = problems.front().path;
        err["problems"] = std::move(list);
    }
    json body = {{"error", std::move(err)}};
    if (e == admin_error::not_durable) {
        // The command took effect: a client must not retry it as if it had not.
        body["applied"] = true;
        body["durable"] = false;
    }
    return json_response(http_status(e), body, version);
}

// An error another module (or a helper here) returned, answered with its own status.
response_t error_from(const error& e, unsigned version) {
    const auto kind = classify(e.code);
    if (kind == admin_error::internal) {
        // A code admin_error lacks is a bug here: answer 500 rather than guess a status.
        log::error("admin", "an error code the admin API does not know: answered 500",
                   {{"code", e.code}, {"error", e.message}});
        return error_json(kind, e.code + ": " + e.message, version, e.problems);
    }
    return error_json(kind, e.message, version, e.problems);
}

template <class T>
response_t ok_or_error(const result<T>& r, unsigned version) {
    if (!r) {
        return error_from(r.error(), version);
    }
    return json_response(http::status::ok, *r, version);
}

// Starts `start(done)` (a gateway call that runs `done` on the control thread once it has
// finished) and resumes the coroutine then: co_await when_done([&](auto done) {
// gw.collect(done); }, net::use_awaitable).
template <class Start, class Token>
auto when_done(Start start, Token&& token) {
    return net::async_initiate<Token, void()>(
        [start = std::move(start)](auto handler) mutable {
            auto h = std::make_shared<decltype(handler)>(std::move(handler));
            start(std::function<void()>([h] { (*h)(); }));
        },
        token);
}

// Merges every worker's metrics, resuming the coroutine when it has.
auto collected(control::plane& gw) {
    return when_done([&gw](std::function<void()> done) { gw.collect(std::move(done)); },
                     net::use_awaitable);
}

// One HTTP exchange on the admin thread, resuming the coroutine with its result.
template <class Token>
auto async_exchange(net::io_context& io, http_call call, Token&& token) {
    return net::async_initiate<Token, void(result<http_reply>)>(
        [&io, call = std::move(call)](auto handler) mutable {
            auto h = std::make_shared<decltype(handler)>(std::move(handler));
            async_http(io, std::move(call), [h](result<http_reply> r) { (*h)(std::move(r)); });
        },
        token);
}

json latency_json(const metrics::latency_histogram& h) {
    auto q = [&](double p) { return h.quantile_micros(p) / 1e6; };
    return {{"p50", q(0.50)}, {"p90", q(0.90)}, {"p99", q(0.99)}};
}

// OpenAI answers' figures beside series_json's "streams" (streams with a data event) and
// "time_to_first_token_seconds", for a version that had any: "tokens" (input, output, output
// by source), "stream_outcomes" (how its streams ended), "time_per_output_token_seconds" and
// "output_tokens_per_second" (completed streams, p10 and p50).
void add_openai_json(json& out, const metrics::series_counts& c) {
    const std::uint64_t output = c.output_tokens[0] + c.output_tokens[1];
    if (c.input_tokens > 0 || output > 0) {
        json by_source = json::object();
        for (std::size_t k = 0; k < metrics::token_sources; ++k) {
            by_source[metrics::token_source_label(k)] = c.output_tokens[k];
        }
        out["tokens"] = {{"input", c.input_tokens}, {"output", output}, {"output_by", by_source}};
    }
    std::uint64_t ended = 0;
    json outcomes = json::object();
    for (std::size_t k = 0; k < metrics::stream_outcomes; ++k) {
        outcomes[metrics::stream_outcome_label(k)] = c.stream_ends[k];
        ended += c.stream_ends[k];
    }
    if (ended == 0 && c.streams == 0) {
        return;
    }
    const auto& rate = c.output_tokens_per_second;
    auto tokens_per_second = [&](double q) {
        return rate.quantile_micros(q) / metrics::token_rate_scale;
    };
    out["stream_outcomes"] = outcomes;
    out["time_per_output_token_seconds"] = latency_json(c.time_per_output_token);
    out["output_tokens_per_second"] = {{"p10", tokens_per_second(0.1)},
                                       {"p50", tokens_per_second(0.5)}};
}

json counts_json(const metrics::series_counts& c) {
    auto requests = c.requests();
    auto errors = c.server_errors();
    json failures = json::object();
    for (std::size_t k = 0; k < metrics::upstream_failure_kinds; ++k) {
        failures[metrics::failure_label(k)] = c.upstream_failures[k];
    }
    json codes = json::object();
    for (std::size_t i = 0; i < metrics::code_slots; ++i) {
        if (c.codes[i]) {
            codes[metrics::code_label(i)] = c.codes[i];
        }
    }
    return {{"requests", requests},
            {"errors", errors},
            {"error_rate", requests ? static_cast<double>(errors) / static_cast<double>(requests)
                                    : 0.0},
            {"codes", codes},
            {"upstream_failures", failures},
            {"latency_seconds", latency_json(c.latency)}};
}

// counts_json, plus the streams and their time to first token when the version answered any.
json series_json(const metrics::series_counts& c) {
    auto out = counts_json(c);
    if (c.streams > 0) {
        out["streams"] = c.streams;
        out["time_to_first_token_seconds"] = latency_json(c.time_to_first_token);
    }
    add_openai_json(out, c);
    return out;
}

// "a=1&b=2" -> map (each part percent-decoded by core/text, '+' a space); nullopt when
// malformed. Split here, not by boost::urls::parse_query: in Boost 1.81 its last parameter's
// value runs past the end of a view that is not the end of its buffer (Beast's target is not),
// so "?limit=20" read as "20 HTTP/1.1".
std::optional<std::map<std::string, std::string>> parse_query(std::string_view q) {
    std::map<std::string, std::string> out;
    while (!q.empty()) {
        auto amp = q.find('&');
        auto pair = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
        if (pair.empty()) {
            continue;
        }
        auto eq = pair.find('=');
        auto key = percent_decode(pair.substr(0, eq), true);
        auto value =
            percent_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
        if (!key || !value) {
            return std::nullopt;
        }
        out[*key] = *value;
    }
    return out;
}

bool parse_u64(std::string_view text, std::uint64_t& out) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

std::string sse_frame(const json& event) {
    std::string out = "id: " + std::to_string(event.value("id", std::uint64_t{0})) + "\n";
    out += "data: " + event.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
    return out;
}

// A request body with `problems`: nothing was done.
error invalid_body(std::vector<problem> problems) {
    return make_error(admin_error::invalid_argument,
                      "the body has " + std::to_string(problems.size()) + " problem(s)",
                      std::move(problems));
}

using query_map = std::map<std::string, std::string>;

// Who may call a route (admin_auth's principals).
enum class role {
    anyone,     // no token: the probes
    scraper,    // a token when admin.metrics_auth is "token", else anyone
    viewer,     // any valid token: reads
    operator_,  // an operator token: changes
};

// One parsed and checked JSON request body.
struct body_fields {
    json j = json::object();
    std::string reason;
};

}  // namespace

struct admin_server::impl {
    struct subscriber {
        std::string model;  // empty: every model
        std::deque<std::string> queue;
        bool overflow = false;
        net::steady_timer wake;
        explicit subscriber(net::io_context& io) : wake(io) {}
    };

    net::io_context& io;
    control::plane& gw;
    tcp::acceptor acceptor{io};
    std::shared_ptr<net::ssl::context> tls;
    token_table tokens;
    config::admin cfg;
    std::list<std::function<void()>> sessions;  // cancels each open session on stop
    std::list<subscriber*> subscribers;
    bool stopped = false;

    impl(net::io_context& i, control::plane& g) : io(i), gw(g) {}

    // nullopt: the session streams the live event feed itself (stream_events).
    using answer = std::optional<response_t>;
    struct call;
    using handler = net::awaitable<answer> (impl::*)(const call&);

    // One endpoint. The table of them, routes(), is the only list of endpoints: dispatch, 404,
    // 405 and its Allow, authorization, leader forwarding and the check against
    // docs/openapi.json (admin_server::operations) all read it.
    struct route {
        http::verb method;         // GET also answers HEAD
        std::string_view pattern;  // as docs/openapi.json writes it: {model} takes one segment
        role need;
        // A change to rollout state, which only the leader makes: a follower forwards it.
        bool leader_only;
        handler run;
        std::initializer_list<std::string_view> fields = {};  // body fields besides "reason"
        std::string_view command = {};  // on_command: the controller's name for it
    };
    static std::span<const route> routes();

    // What a route's handler is given.
    struct call {
        const request_t& req;
        const route& endpoint;
        std::vector<std::string> params;  // what the pattern's {parameters} took, in order
        const query_map& query;
        const principal* who;  // null when the route needs no token and none was asked for
        unsigned version() const { return req.version(); }
    };

    void broadcast(const json& event) {
        const std::string model = event.value("model", "");
        std::string frame;
        for (auto* s : subscribers) {
            if (!s->model.empty() && s->model != model) {
                continue;
            }
            if (frame.empty()) {
                frame = sse_frame(event);
            }
            if (s->queue.size() >= sse_queue_limit) {
                s->overflow = true;
            } else {
                s->queue.push_back(frame);
            }
            s->wake.cancel();
        }
    }

    json model_json(const routing::model_route& m) const {
        json versions = json::array();
        for (std::size_t v = 0; v < m.versions.size(); ++v) {
            json endpoints = json::array();
            for (const auto& ep : m.versions[v].endpoints) {
                endpoints.push_back(ep.authority);
            }
            const auto& version = m.versions[v];
            const char* protocol = !version.http2 ? "http1" : (version.tls ? "h2" : "h2c");
            versions.push_back({{"name", m.versions[v].name},
                                {"weight_bp", m.weights[v]},
                                {"stable", v == m.stable},
                                {"tls", static_cast<bool>(m.versions[v].tls)},
                                {"protocol", protocol},
                                {"endpoints", endpoints}});
        }
        json out = {{"name", m.name}, {"stage", m.stage}, {"versions", versions}};
        auto* ctl = gw.rollouts();
        auto ro = ctl ? ctl->find(m.name) : std::nullopt;
        out["rollout"] = ro ? json{{"phase", rollout::phase_name(ro->ph)},
                                   {"candidate", ro->candidate}}
                            : json(nullptr);
        return out;
    }

    // Checks the body against the fields a call accepts; the empty body is {}.
    // {"request_id", "label"} or {"labels": [{"request_id", "label"}, ...]}: all or nothing.
    static result<std::vector<control::feedback_label>> feedback_labels(const json& j) {
        constexpr std::size_t max_labels = 100000;
        std::vector<control::feedback_label> out;
        std::vector<problem> problems;
        auto one = [&](const json& item, const std::string& path) {
            if (!item.is_object()) {
                problems.push_back({path, std::string("expected an object, got ") + item.type_name()});
                return;
            }
            for (const auto& [key, value] : item.items()) {
                if (key != "request_id" && key != "label" && !(path.empty() && key == "reason")) {
                    problems.push_back({path + "/" + key, "unknown field"});
                }
            }
            auto id = item.find("request_id");
            auto label = item.find("label");
            if (id == item.end() || !id->is_string() || id->get<std::string>().empty()) {
                problems.push_back({path + "/request_id", "needs a non-empty string"});
            }
            if (label == item.end() || !(label->is_string() || label->is_number() ||
                                         label->is_boolean())) {
                problems.push_back({path + "/label", "needs a string, number or boolean"});
            }
            if (problems.empty()) {
                out.push_back({id->get<std::string>(), *label});
            }
        };
        if (auto list = j.find("labels"); list != j.end()) {
            if (j.contains("request_id") || j.contains("label")) {
                problems.push_back({"/labels", "give either labels or one request_id and label"});
            } else if (!list->is_array() || list->empty() || list->size() > max_labels) {
                problems.push_back({"/labels", "needs an array of 1 to " +
                                                   std::to_string(max_labels) + " labels"});
            } else {
                for (std::size_t i = 0; i < list->size() && problems.size() < 20; ++i) {
                    one((*list)[i], "/labels/" + std::to_string(i));
                }
            }
        } else {
            one(j, "");
        }
        if (!problems.empty()) {
            return make_error(admin_error::invalid_argument,
                              "the feedback was not taken: " + std::to_string(problems.size()) +
                                  " problem(s), nothing was applied",
                              std::move(problems));
        }
        return out;
    }

    result<body_fields> read_body(const request_t& req,
                                  std::initializer_list<std::string_view> fields) const {
        body_fields out;
        const auto& text = req.body();
        if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
            return out;
        }
        // The body is read as JSON whatever its Content-Type says: curl -d labels JSON as a
        // form, and refusing that helps nobody.
        std::string why;
        out.j = parse_json(text, &why);
        if (out.j.is_discarded()) {
            return make_error(admin_error::invalid_json, "the body is not valid JSON",
                              {{"", why}});
        }
        if (!out.j.is_object()) {
            return make_error(admin_error::invalid_argument, "the body must be a JSON object",
                              {{"", std::string("expected an object, got ") + out.j.type_name()}});
        }
        std::vector<problem> problems;
        // Named up to a point: a body of 90,000 unknown keys took 2.9 s of the control thread
        // to list them all back.
        constexpr std::size_t named_at_most = 20;
        std::size_t unknown = 0;
        for (const auto& [key, value] : out.j.items()) {
            bool known = key == "reason";
            for (auto f : fields) {
                known = known || f == key;
            }
            if (!known && ++unknown <= named_at_most) {
                problems.push_back({"/" + key, "unknown field"});
            }
        }
        if (unknown > named_at_most) {
            problems.push_back({"", std::to_string(unknown - named_at_most) +
                                        " more unknown fields"});
        }
        if (auto it = out.j.find("reason"); it != out.j.end()) {
            if (!it->is_string()) {
                problems.push_back({"/reason", std::string("expected a string, got ") +
                                                   it->type_name()});
            } else if (it->get_ref<const std::string&>().size() > 1024) {
                problems.push_back({"/reason", "longer than 1024 characters"});
            } else {
                out.reason = it->get<std::string>();
            }
        }
        if (!problems.empty()) {
            return invalid_body(std::move(problems));
        }
        return out;
    }

    result<json> run_command(const route& endpoint, const std::string& model,
                             const body_fields& body, const principal& who) {
        json args = json::object();
        std::vector<problem> problems;
        if (endpoint.command == "promote" && body.j.contains("full")) {
            if (!body.j["full"].is_boolean()) {
                problems.push_back({"/full", "expected true or false"});
            } else {
                args["full"] = body.j["full"];
            }
        }
        if (endpoint.command == "set_weight") {
            const bool has_bp = body.j.contains("weight_bp");
            const bool has_pct = body.j.contains("percent");
            if (has_bp == has_pct) {
                problems.push_back({"", "give exactly one of weight_bp (0..10000) or percent "
                                        "(0..100)"});
            } else if (has_bp) {
                const auto& w = body.j["weight_bp"];
                if (!w.is_number_integer() || w.get<std::int64_t>() < 0 ||
                    w.get<std::int64_t>() > config::total_weight) {
                    problems.push_back({"/weight_bp", "expected an integer from 0 to 10000"});
                } else {
                    args["weight_bp"] = w.get<std::uint32_t>();
                }
            } else {
                const auto& p = body.j["percent"];
                const double pct = p.is_number() ? p.get<double>() : -1;
                const double bp = pct * 100.0;
                if (!p.is_number() || !(pct >= 0 && pct <= 100) ||
                    std::abs(bp - std::round(bp)) > 1e-6) {
                    problems.push_back({"/percent", "expected a number from 0 to 100 in steps "
                                                    "of 0.01"});
                } else {
                    args["weight_bp"] = static_cast<std::uint32_t>(std::lround(bp));
                }
            }
        }
        if (!problems.empty()) {
            return invalid_body(std::move(problems));
        }
        if (auto refused = gw.refused_while_state_unavailable()) {
            return *refused;
        }
        auto* ctl = gw.rollouts();
        if (!ctl) {
            return make_error(admin_error::unknown_rollout,
                              "model \"" + model + "\" has no rollout");
        }
        return ctl->command(model, std::string(endpoint.command), args, who.name, body.reason,
                            rollout::clock::now());
    }

    result<json> start_rollout(const body_fields& body, const principal& who) {
        std::vector<problem> problems;
        std::string model;
        if (!body.j.contains("model")) {
            problems.push_back({"/model", "required string is missing"});
        } else if (!body.j["model"].is_string() || body.j["model"].get<std::string>().empty()) {
            problems.push_back({"/model", "expected a model name"});
        } else {
            model = body.j["model"].get<std::string>();
        }
        if (!body.j.contains("rollout")) {
            problems.push_back({"/rollout", "required object is missing"});
        }
        if (!problems.empty()) {
            return invalid_body(std::move(problems));
        }
        auto spec = config::parse_rollout(body.j["rollout"].dump(), "/rollout");
        if (!spec) {
            return spec.error();
        }
        auto started = gw.start_rollout(model, std::move(*spec), who.name, body.reason);
        if (!started && classify(started.error().code) == admin_error::invalid_rollout) {
            // The controller's paths are relative to the rollout object.
            auto e = started.error();
            for (auto& p : e.problems) {
                p.path = "/rollout" + p.path;
            }
            return e;
        }
        return started;
    }

    result<json> events_page(const std::string& model,
                             const std::map<std::string, std::string>& query) {
        std::uint64_t limit = 100;
        std::uint64_t before = 0;
        std::vector<problem> problems;
        for (const auto& [key, value] : query) {
            if (key == "limit") {
                if (!parse_u64(value, limit) || limit < 1 || limit > 1000) {
                    problems.push_back({"?limit", "expected an integer from 1 to 1000"});
                }
            } else if (key == "before") {
                if (!parse_u64(value, before) || before == 0) {
                    problems.push_back({"?before", "expected a positive event id"});
                }
            } else {
                problems.push_back({"?" + key, "unknown query parameter (limit, before)"});
            }
        }
        if (!problems.empty()) {
            return make_error(admin_error::invalid_argument, "bad query parameters",
                              std::move(problems));
        }
        json events = json::array();
        json next = nullptr;
        if (auto* log = gw.event_log()) {
            auto page = log->events(limit, model, before);
            for (auto& e : page.events) {
                events.push_back(std::move(e));
            }
            if (page.more && !events.empty()) {
                next = events.front().value("id", std::uint64_t{0});
            }
        }
        json page = {{"model", model}, {"events", events}, {"next_before", next}};
        return result<json>(boost::system::in_place_value, std::move(page));
    }

    // A path (without its leading '/') split on '/' and percent-decoded; nullopt when a
    // segment is malformed.
    static std::optional<std::vector<std::string>> segments(std::string_view path) {
        std::vector<std::string> out;
        while (!path.empty()) {
            auto slash = path.find('/');
            auto seg = percent_decode(path.substr(0, slash), false);
            if (!seg) {
                return std::nullopt;
            }
            out.push_back(std::move(*seg));
            if (slash == std::string_view::npos) {
                break;
            }
            path.remove_prefix(slash + 1);
        }
        return out;
    }

    // Whether a path's segments have a route pattern's shape ("{x}" takes any one segment);
    // `params` gets what the {x} took, in order.
    static bool matches(std::string_view pattern, const std::vector<std::string>& segs,
                        std::vector<std::string>& params) {
        params.clear();
        if (pattern == "/") {
            return segs.empty();  // the root, the one path without a segment
        }
        for (const auto& seg : segs) {
            if (pattern.empty()) {
                return false;  // the path is longer
            }
            pattern.remove_prefix(1);  // the '/'
            const auto want = pattern.substr(0, pattern.find('/'));
            pattern.remove_prefix(want.size());
            if (want.starts_with('{')) {
                params.push_back(seg);
            } else if (want != seg) {
                return false;
            }
        }
        return pattern.empty();
    }

    bool needs_token(role need) const {
        switch (need) {
            case role::anyone:
                return false;
            case role::scraper:
                return cfg.metrics_need_token;
            case role::viewer:
            case role::operator_:
                return true;
        }
        return true;  // not an enumerator: unreachable
    }

    // What a request gets. The route table decides what lives at a path (404), with which
    // methods (405 and its Allow), who may call it (401, 403) and who answers.
    net::awaitable<answer> handle(const request_t& req) {
        const unsigned v = req.version();
        std::string_view target = req.target();
        auto qpos = target.find('?');
        std::string_view path = target.substr(0, qpos);
        std::string_view query_text = qpos == std::string_view::npos ? "" : target.substr(qpos + 1);
        // Under /api/v1/ a caller proves who it is first: without a token, not even a 404 or
        // 405 says which endpoints exist.
        const bool under_api = path.starts_with("/api/v1/");
        std::optional<principal> who;
        if (under_api) {
            response_t denied;
            who = authenticate(req, denied);
            if (!who) {
                co_return denied;
            }
        }
        auto segs = path.starts_with('/') ? segments(path.substr(1)) : std::nullopt;
        if (!segs && under_api) {
            co_return error_json(admin_error::bad_path, "malformed percent-encoding in the path",
                                 v);
        }
        const auto method = req.method() == http::verb::head ? http::verb::get : req.method();
        const route* found = nullptr;
        std::vector<std::string> params;
        std::string allow;  // every method served at this path, in table order
        for (const auto& r : segs ? routes() : std::span<const route>{}) {
            std::vector<std::string> taken;
            if (!matches(r.pattern, *segs, taken)) {
                continue;
            }
            allow += allow.empty() ? "" : ", ";
            allow += std::string(http::to_string(r.method));
            if (r.method == http::verb::get) {
                allow += ", HEAD";
            }
            if (r.method == method) {
                found = &r;
                params = std::move(taken);
            }
        }
        if (allow.empty()) {
            co_return error_json(admin_error::not_found,
                                 "no admin endpoint at " + std::string(path), v);
        }
        if (!found) {
            auto res = error_json(
                admin_error::method_not_allowed,
                std::string(req.method_string()) + " is not allowed here; use " + allow, v);
            res.set(http::field::allow, allow);
            co_return res;
        }
        if (!who && needs_token(found->need)) {
            response_t denied;
            who = authenticate(req, denied);
            if (!who) {
                co_return denied;
            }
        }
        if (found->need == role::operator_ && !who->can_operate) {
            co_return error_json(admin_error::forbidden,
                                 "token \"" + who->name +
                                     "\" is a viewer: changing anything needs an operator token",
                                 v);
        }
        auto query = parse_query(query_text);
        if (!query) {
            if (under_api) {  // outside the API (probes, scrapes) a query is ignored
                co_return error_json(admin_error::bad_query, "malformed query string", v);
            }
            query.emplace();
        }
        bool led = false;  // this replica led the cluster when the change came in
        if (found->leader_only) {
            auto cluster = gw.cluster_status();
            led = cluster.value("store", "") == "etcd" && cluster.value("leader", false);
            if (cluster.value("store", "") == "etcd" && !cluster.value("leader", false)) {
                co_await when_done(  // who leads right now
                    [this](std::function<void()> done) { gw.refresh_leader(std::move(done)); },
                    net::use_awaitable);
                cluster = gw.cluster_status();
                if (!cluster.value("leader", false)) {
                    co_return co_await forward_to_leader(req, cluster);
                }
            }
        }
        // A named call, not a temporary inside the co_await: g++ 12 mishandles that
        // temporary's lifetime when the handler suspends (it crashed freeing `params`).
        const call c{req, *found, std::move(params), *query, who ? &*who : nullptr};
        auto res = co_await (this->*found->run)(c);
        if (led && res && res->result() == http::status::service_unavailable &&
            !gw.cluster_status().value("leader", false)) {
            // It found out while making the change that it no longer leads (stopped or cut
            // off across its lease: its write was refused and nothing was applied). Another
            // replica leads now and decides: the change goes there, as from any follower,
            // instead of a refusal (or a rollback applied on this replica alone).
            co_await when_done(
                [this](std::function<void()> done) { gw.refresh_leader(std::move(done)); },
                net::use_awaitable);
            auto cluster = gw.cluster_status();
            if (!cluster.value("leader", false) &&
                cluster.value("leader_replica", "") != cluster.value("replica", "")) {
                co_return co_await forward_to_leader(req, cluster);
            }
        }
        co_return res;
    }

    // The handlers, in the route table's order.

    net::awaitable<answer> on_healthz(const call& c) {
        co_return json_response(http::status::ok, {{"status", "ok"}}, c.version());
    }

    net::awaitable<answer> on_readyz(const call& c) {
        if (gw.draining()) {
            co_return error_json(admin_error::draining, "the gateway is shutting down",
                                 c.version());
        }
        json ready = {{"status", "ready"}};
        if (const auto& problem = gw.state_problem()) {
            // Still ready: traffic is served (stable versions only); rollouts wait.
            ready["rollout_state"] = {
                {"available", false}, {"code", problem->code}, {"error", problem->describe()}};
        }
        const auto cluster = gw.cluster_status();
        if (cluster.value("store", "") == "etcd") {
            if (!cluster.value("synced_once", false)) {
                // Not ready: until it has read the cluster's rollout states it routes by the
                // config's static weights, which may be what the others rolled back from, or
                // an old stable after a completed rollout.
                co_return error_json(
                    admin_error::not_synced,
                    "this replica has not read the rollout states from etcd since it started (" +
                        cluster.value("unsynced_reason", std::string("not read yet")) +
                        "): it would route by the config's static weights, not by the "
                        "cluster's decisions",
                    c.version());
            }
            // Synced once: it routes by the last states it read. Still ready while etcd is
            // away, since every replica loses etcd at the same moment: failing them all
            // would take the whole gateway out of the load balancer over an etcd blip.
            ready["rollout_state"] = {{"synced", cluster.value("synced", false)},
                                      {"revision", cluster.value("revision", 0)}};
            if (!cluster.value("synced", false)) {
                ready["rollout_state"]["code"] = "rollout_state_stale";
                ready["rollout_state"]["error"] =
                    "routing by the last rollout states read (revision " +
                    std::to_string(cluster.value("revision", 0)) + ") for " +
                    std::to_string(cluster.value("unsynced_for_ms", 0)) + " ms: " +
                    cluster.value("unsynced_reason", std::string()) +
                    "; rollout changes are refused until etcd answers";
            }
        }
        co_return json_response(http::status::ok, ready, c.version());
    }

    net::awaitable<answer> on_metrics(const call& c) {
        co_await collected(gw);
        response_t res{http::status::ok, c.version()};
        res.set(http::field::server, "stagegate-admin");
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res.body() = gw.render_prometheus();
        co_return res;
    }

    net::awaitable<answer> on_models(const call& c) {
        json models = json::array();
        if (auto snap = gw.routes()) {
            for (const auto& m : snap->models) {
                models.push_back(model_json(m));
            }
        }
        co_return json_response(http::status::ok, {{"models", models}}, c.version());
    }

    static response_t unknown_model(const std::string& model, unsigned version) {
        return error_json(admin_error::unknown_model, "no model named \"" + model + "\"", version);
    }

    net::awaitable<answer> on_model(const call& c) {
        auto snap = gw.routes();
        const auto* m = snap ? snap->find_model(c.params[0]) : nullptr;
        if (!m) {
            co_return unknown_model(c.params[0], c.version());
        }
        co_return json_response(http::status::ok, model_json(*m), c.version());
    }

    net::awaitable<answer> on_model_metrics(const call& c) {
        // Looked up after collecting: the routes may change meanwhile.
        co_await collected(gw);
        auto snap = gw.routes();
        const auto* m = snap ? snap->find_model(c.params[0]) : nullptr;
        if (!m) {
            co_return unknown_model(c.params[0], c.version());
        }
        json versions = json::array();
        for (const auto& vm : gw.version_metrics_now()) {
            if (vm.model != m->name) {
                continue;
            }
            auto window = series_json(vm.window.counts);
            window["seconds"] = vm.window.seconds;
            window["rps"] = static_cast<double>(vm.window.counts.requests()) / vm.window.seconds;
            auto stage = series_json(vm.since_stage_start);
            stage["seconds"] =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - vm.stage_started)
                    .count();
            auto idx = m->find_version(vm.version);
            versions.push_back({{"version", vm.version},
                                {"stage", vm.stage},
                                {"weight_bp", m->weights[idx]},
                                {"stable", idx == m->stable},
                                {"since_stage_start", stage},
                                {"window", window}});
        }
        co_return json_response(http::status::ok,
                                {{"model", m->name}, {"stage", m->stage}, {"versions", versions}},
                                c.version());
    }

    net::awaitable<answer> on_rollouts(const call& c) {
        auto* ctl = gw.rollouts();
        co_return json_response(
            http::status::ok,
            {{"rollouts", ctl ? ctl->status_all(rollout::clock::now()) : json::array()}},
            c.version());
    }

    net::awaitable<answer> on_start_rollout(const call& c) {
        auto body = read_body(c.req, c.endpoint.fields);
        if (!body) {
            co_return error_from(body.error(), c.version());
        }
        auto started = start_rollout(*body, *c.who);
        if (!started) {
            co_return error_from(started.error(), c.version());
        }
        co_return json_response(http::status::created, *started, c.version());
    }

    // A follower's own view of a rollout has its own counts only and no gates (the leader
    // alone sums every replica's and judges them), so it answers with the leader's view; when
    // the leader cannot answer, with its own, saying so ("view").
    net::awaitable<answer> on_rollout(const call& c) {
        const std::string& model = c.params[0];
        const auto cluster = gw.cluster_status();
        json view = json::object();
        if (cluster.value("store", "") == "etcd") {
            view = {{"replica", cluster.value("replica", "")},
                    {"leader", cluster.value("leader", false)}};
            if (!cluster.value("leader", false) && c.req[forwarded_header].empty()) {
                std::string why;
                auto from_leader = co_await leader_view(c.req, cluster, why);
                if (from_leader) {
                    co_return from_leader;
                }
                view["partial"] = true;
                view["why"] = why + ": this replica's own counts, no gates (the leader alone "
                                    "judges the sum of every replica's)";
            }
        }
        auto* ctl = gw.rollouts();
        if (!ctl || !ctl->has(model)) {
            co_return error_json(admin_error::unknown_rollout,
                                 "model \"" + model + "\" has no rollout", c.version());
        }
        auto status = ctl->status(model, rollout::clock::now());
        // The event webhooks this rollout's events go to, with their last results.
        json hooks = json::array();
        if (const auto* w = gw.webhooks()) {
            const auto& configured = gw.current_config().webhooks;
            auto all = w->status();
            for (std::size_t i = 0; i < all.size() && i < configured.size(); ++i) {
                const auto& models = configured[i].models;
                if (models.empty() ||
                    std::find(models.begin(), models.end(), model) != models.end()) {
                    hooks.push_back(std::move(all[i]));
                }
            }
        }
        status["webhooks"] = std::move(hooks);
        if (!view.empty()) {
            status["view"] = std::move(view);
        }
        co_return json_response(http::status::ok, status, c.version());
    }

    // The leader's answer to this read (a 2xx or 404, relayed with X-Stagegate-Leader), or
    // none with `why` (no leader, no URL, no answer).
    net::awaitable<answer> leader_view(const request_t& req, const json& cluster,
                                       std::string& why) {
        const auto leader = cluster.value("leader_admin", "");
        const auto name = cluster.value("leader_replica", "");
        auto url = parse_http_url(leader, false);
        if (name.empty() || !url) {
            why = name.empty() ? "no replica leads the cluster now"
                               : "the leader " + name + " publishes no admin API URL";
            co_return std::nullopt;
        }
        http_call exchange;
        exchange.url = *url;
        exchange.url.target = std::string(req.target());
        exchange.timeout = std::chrono::seconds(2);
        if (auto token = req[http::field::authorization]; !token.empty()) {
            exchange.headers.emplace_back("Authorization", std::string(token));
        }
        exchange.headers.emplace_back(std::string(forwarded_header), cluster.value("replica", ""));
        auto r = co_await async_exchange(io, std::move(exchange), net::use_awaitable);
        if (!r || (r->status / 100 != 2 && r->status != 404)) {
            why = "the leader " + name + " at " + leader + " did not answer (" +
                  (r ? "HTTP " + std::to_string(r->status) : r.error().message) + ")";
            co_return std::nullopt;
        }
        response_t res{static_cast<http::status>(r->status), req.version()};
        res.set(http::field::server, "stagegate-admin");
        res.set(http::field::content_type, "application/json");
        res.set("X-Stagegate-Leader", name);
        res.body() = std::move(r->body);
        res.prepare_payload();
        co_return res;
    }

    // pause, resume, promote, rollback, abort, restart, weight: the route names the command.
    net::awaitable<answer> on_command(const call& c) {
        auto body = read_body(c.req, c.endpoint.fields);
        if (!body) {
            co_return error_from(body.error(), c.version());
        }
        co_return ok_or_error(run_command(c.endpoint, c.params[0], *body, *c.who), c.version());
    }

    net::awaitable<answer> on_rollout_events(const call& c) {
        const std::string& model = c.params[0];
        auto* ctl = gw.rollouts();
        auto snap = gw.routes();
        if (!(ctl && ctl->has(model)) && !(snap && snap->find_model(model))) {
            co_return unknown_model(model, c.version());
        }
        co_await history_turn();
        auto page = events_page(model, c.query);
        history_done();
        co_return ok_or_error(page, c.version());
    }

    // The rollout's report (rollout/report), told from its events: pages back through the
    // model's history to the latest "started" event, up to report_events_max events.
    net::awaitable<answer> on_rollout_report(const call& c) {
        const std::string& model = c.params[0];
        auto* ctl = gw.rollouts();
        if (!ctl || !ctl->has(model)) {
            co_return error_json(admin_error::unknown_rollout,
                                 "model \"" + model + "\" has no rollout", c.version());
        }
        std::vector<json> events;
        if (auto* log = gw.event_log()) {
            std::uint64_t before = 0;
            while (events.size() < report_events_max) {
                auto page = log->events(report_page_size, model, before);
                const bool found_start = rollout::latest_start(page.events).has_value();
                events.insert(events.begin(), std::make_move_iterator(page.events.begin()),
                              std::make_move_iterator(page.events.end()));
                if (found_start || !page.more || events.empty()) {
                    break;
                }
                before = events.front().value("id", std::uint64_t{0});
            }
        }
        const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
        co_return json_response(
            http::status::ok,
            rollout::assemble_report(model, events, ctl->running_stage(model), now_ms),
            c.version());
    }

    net::awaitable<answer> on_events(const call& c) {
        if (c.req.method() == http::verb::get) {
            co_return std::nullopt;  // the session streams it: stream_events
        }
        // HEAD: what a GET would start streaming.
        response_t res{http::status::ok, c.version()};
        res.set(http::field::server, "stagegate-admin");
        res.set(http::field::content_type, "text/event-stream");
        co_return res;
    }

    net::awaitable<answer> on_webhooks(const call& c) {
        const auto* hooks = gw.webhooks();
        co_return json_response(
            http::status::ok, {{"webhooks", hooks ? hooks->status() : json::array()}}, c.version());
    }

    net::awaitable<answer> on_reload(const call& c) {
        const unsigned v = c.version();
        auto body = read_body(c.req, c.endpoint.fields);
        if (!body) {
            co_return error_from(body.error(), v);
        }
        if (gw.config_path().empty()) {
            co_return error_json(admin_error::no_config_file,
                                 "this gateway was not started from a config file", v);
        }
        auto next = config::load_file(gw.config_path());
        if (!next) {
            co_return error_from(next.error(), v);
        }
        co_return ok_or_error(gw.reload(std::move(*next), c.who->name), v);
    }

    net::awaitable<answer> on_feedback(const call& c) {
        const unsigned v = c.version();
        auto body = read_body(c.req, c.endpoint.fields);
        if (!body) {
            co_return error_from(body.error(), v);
        }
        auto labels = feedback_labels(body->j);
        if (!labels) {
            co_return error_from(labels.error(), v);
        }
        const auto& models = gw.current_config().models;
        if (std::none_of(models.begin(), models.end(), [](const config::model& m) {
                return m.prediction && m.prediction->feedback;
            })) {
            co_return error_json(admin_error::feedback_not_enabled,
                                 "no model takes feedback: give one \"predictions\" with "
                                 "\"feedback\" in the config",
                                 v);
        }
        // Answers reach the control thread with the metrics: collect first, so a label sent
        // right after its answer still finds it.
        co_await collected(gw);
        auto out = gw.apply_feedback(*labels);
        co_return json_response(http::status::ok,
                                {{"received", labels->size()},
                                 {"matched", out.matched},
                                 {"late", out.late},
                                 {"unmatched", out.unmatched},
                                 {"duplicate", out.duplicate},
                                 {"ambiguous", out.ambiguous},
                                 {"unusable", out.unusable}},
                                v);
    }

    net::awaitable<answer> on_openapi(const call& c) {
        response_t res{http::status::ok, c.version()};
        res.set(http::field::server, "stagegate-admin");
        res.set(http::field::content_type, "application/json");
        res.body() = std::string(openapi_document());
        co_return res;
    }

    net::awaitable<answer> on_cluster(const call& c) {
        co_return json_response(http::status::ok, gw.cluster_status(), c.version());
    }

    // Who the token is: what the dashboard shows, and whether it offers the commands.
    net::awaitable<answer> on_whoami(const call& c) {
        co_return json_response(http::status::ok,
                                {{"name", c.who->name},
                                 {"role", c.who->can_operate ? "operator" : "viewer"},
                                 {"tokens_required", !tokens.open()}},
                                c.version());
    }

    // "/" and "/ui" lead to "/ui/", the dashboard's page: its files are named relative to it.
    net::awaitable<answer> on_ui_page(const call& c) {
        const auto target = c.req.target();
        if (target.substr(0, target.find('?')) != "/ui/") {
            co_return ui_redirect("/ui/", c.version());
        }
        co_return ui_file_answer("index.html", c.req[http::field::if_none_match], c.version());
    }

    net::awaitable<answer> on_ui_file(const call& c) {
        auto res = ui_file_answer(c.params[0], c.req[http::field::if_none_match], c.version());
        if (!res) {
            co_return error_json(admin_error::not_found,
                                 "the dashboard has no file named \"" + c.params[0] + "\"",
                                 c.version());
        }
        co_return std::move(*res);
    }

    // A follower replica hands rollout changes to the leader, the one replica that decides,
    // and relays its answer: an operator may send them to any replica. A request that was
    // forwarded once is never forwarded again (leadership moved meanwhile: try again).
    net::awaitable<response_t> forward_to_leader(const request_t& req, const json& cluster) {
        const unsigned v = req.version();
        const auto leader = cluster.value("leader_admin", "");
        auto url = parse_http_url(leader, false);
        const auto leader_name = cluster.value("leader_replica", "");
        if (!leader_name.empty() && (leader.empty() || !url)) {
            co_return error_json(admin_error::leader_unaddressable,
                                 "the leader " + leader_name +
                                     " publishes no admin API URL to "
                                     "forward to (its admin listener is off, or set "
                                     "state.advertise_admin): send the change to it directly",
                                 v);
        }
        if (leader.empty() || !url || !req[forwarded_header].empty()) {
            co_return error_json(admin_error::no_leader,
                                 "no replica leads the cluster now (an election, or etcd out of "
                                 "reach): the change was not made; try again",
                                 v);
        }
        http_call exchange;
        exchange.method = std::string(req.method_string());
        exchange.url = *url;
        exchange.url.target = std::string(req.target());
        exchange.body = req.body();
        exchange.timeout = std::chrono::seconds(10);
        for (auto field : {http::field::authorization, http::field::content_type}) {
            if (auto value = req[field]; !value.empty()) {
                exchange.headers.emplace_back(std::string(http::to_string(field)),
                                              std::string(value));
            }
        }
        exchange.headers.emplace_back(std::string(forwarded_header), cluster.value("replica", ""));
        auto r = co_await async_exchange(io, std::move(exchange), net::use_awaitable);
        if (!r) {
            co_return error_json(admin_error::leader_unreachable,
                                 "the leader " + cluster.value("leader_replica", "") + " at " +
                                     leader + " did not answer: " + r.error().message,
                                 v);
        }
        response_t res{static_cast<http::status>(r->status), v};
        res.set(http::field::server, "stagegate-admin");
        res.set(http::field::content_type, "application/json");
        res.set("X-Stagegate-Leader", cluster.value("leader_replica", ""));
        res.body() = std::move(r->body);
        res.prepare_payload();
        co_return res;
    }

    // Authenticates; on failure `denied` holds the response.
    std::optional<principal> authenticate(const request_t& req, response_t& denied) const {
        if (tokens.open()) {
            return principal{"anonymous", true};
        }
        auto header = req[http::field::authorization];
        auto who = header.empty() ? std::nullopt : tokens.authenticate(header);
        if (!who) {
            denied = header.empty()
                         ? error_json(admin_error::missing_token,
                                      "send Authorization: Bearer <token>", req.version())
                         : error_json(admin_error::invalid_token, "the bearer token is not valid",
                                      req.version());
            denied.set(http::field::www_authenticate, "Bearer realm=\"stagegate-admin\"");
        }
        return who;
    }

    // Reads of the event history (pages, replays) take turns, one at a time in arrival order:
    // however many viewers read, a probe on this thread waits behind one page of reading,
    // not behind every viewer's (twenty viewers replaying and paging pushed /healthz past
    // 100 ms, and past Kubernetes' 1 s probe timeout when each read was the whole log).
    bool history_busy = false;
    std::deque<net::steady_timer*> history_waiting;

    net::awaitable<void> history_turn() {
        if (!history_busy) {
            history_busy = true;
            co_return;
        }
        net::steady_timer turn(io, net::steady_timer::time_point::max());
        history_waiting.push_back(&turn);
        co_await turn.async_wait(nothrow_awaitable);  // cancelled by history_done: our turn
    }

    void history_done() {
        if (history_waiting.empty()) {
            history_busy = false;
            return;
        }
        auto* next = history_waiting.front();  // the turn passes on: still busy
        history_waiting.pop_front();
        next->cancel();
    }

    // Queues for a follower what it missed since event `since` (the newest sse_replay_limit
    // of them), ahead of what went live meanwhile. Read a page at a time, newest first, with a
    // turn of the control thread between pages: a replay of a thousand events in one go held
    // the thread for tens of milliseconds, and twenty viewers replaying delayed /healthz by
    // the sum. The first page is read at once on subscribing, so an event is either in the
    // log's pages or in the live queue, never both nor neither; later pages are older.
    net::awaitable<void> replay_missed(subscriber& sub, std::uint64_t since) {
        constexpr std::size_t page_size = 50;
        std::deque<std::string> missed;
        std::uint64_t before = 0;  // none: from the newest
        std::size_t left = sse_replay_limit;
        while (left > 0 && !stopped) {
            auto* log = gw.event_log();
            if (!log) {
                break;
            }
            auto page = log->events(std::min(left, page_size), sub.model, before, since);
            for (auto e = page.events.rbegin(); e != page.events.rend(); ++e) {
                missed.push_front(sse_frame(*e));
            }
            left -= std::min(left, page.events.size());
            if (!page.more || page.events.empty()) {
                break;
            }
            before = page.events.front().value("id", std::uint64_t{0});
            co_await net::post(io, net::use_awaitable);  // a turn for probes and the others
        }
        sub.queue.insert(sub.queue.begin(), std::make_move_iterator(missed.begin()),
                         std::make_move_iterator(missed.end()));
    }

    template <class Stream>
    net::awaitable<void> stream_events(Stream& stream, const request_t& req) {
        std::string_view target = req.target();
        auto qpos = target.find('?');
        auto query =
            parse_query(qpos == std::string_view::npos ? "" : target.substr(qpos + 1));
        std::uint64_t since = 0;
        std::string model;
        std::optional<response_t> refused;
        if (!query) {
            refused = error_json(admin_error::bad_query, "malformed query", 11);
        } else {
            for (const auto& [key, value] : *query) {
                if (key == "model") {
                    model = value;
                } else if (key == "since") {
                    if (!parse_u64(value, since)) {
                        refused =
                            error_json(admin_error::invalid_argument, "since: expected an event id",
                                       11, {{"?since", "expected an event id"}});
                    }
                } else {
                    refused = error_json(admin_error::invalid_argument,
                                         "unknown query parameter " + key + " (model, since)", 11,
                                         {{"?" + key, "unknown query parameter"}});
                }
            }
        }
        if (auto last = req["Last-Event-ID"]; !last.empty() && !refused) {
            if (!parse_u64(last, since)) {
                refused = error_json(admin_error::invalid_argument,
                                     "Last-Event-ID: expected an event id", 11);
            }
        }
        if (refused) {
            refused->keep_alive(false);
            refused->prepare_payload();
            co_await http::async_write(stream, *refused, nothrow_awaitable);
            co_return;
        }
        subscriber sub(io);
        sub.model = model;
        if (since > 0) {
            co_await history_turn();  // before subscribing: see replay_missed
        }
        auto it = subscribers.insert(subscribers.end(), &sub);
        if (since > 0) {
            co_await replay_missed(sub, since);
            history_done();
        }
        std::string head =
            "HTTP/1.1 200 OK\r\nServer: stagegate-admin\r\nContent-Type: text/event-stream\r\n"
            "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n"
            "retry: 2000\n: stagegate event feed\n\n";
        auto [ec, n] = co_await net::async_write(stream, net::buffer(head), nothrow_awaitable);
        while (!ec && !stopped) {
            while (!sub.queue.empty() && !ec) {
                std::string frame = std::move(sub.queue.front());
                sub.queue.pop_front();
                std::tie(ec, n) =
                    co_await net::async_write(stream, net::buffer(frame), nothrow_awaitable);
            }
            if (ec || sub.overflow || stopped) {
                break;
            }
            sub.wake.expires_after(sse_heartbeat);
            auto [wait_ec] = co_await sub.wake.async_wait(nothrow_awaitable);
            if (!wait_ec && !stopped) {
                static const std::string beat = ": keepalive\n\n";
                std::tie(ec, n) =
                    co_await net::async_write(stream, net::buffer(beat), nothrow_awaitable);
            }
        }
        subscribers.erase(it);
    }

    template <class Stream>
    net::awaitable<void> serve(Stream& stream) {
        beast::flat_buffer buffer;
        for (;;) {
            http::request_parser<http::string_body> parser;
            parser.header_limit(16 * 1024);
            parser.body_limit(cfg.max_body_bytes);
            beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(60));
            auto [ec, n] =
                co_await http::async_read_header(stream, buffer, parser, nothrow_awaitable);
            if (!ec && parser.get()[http::field::expect] == "100-continue") {
                http::response<http::empty_body> cont{http::status::continue_, 11};
                co_await http::async_write(stream, cont, nothrow_awaitable);
            }
            if (!ec && !parser.is_done()) {
                std::tie(ec, n) =
                    co_await http::async_read(stream, buffer, parser, nothrow_awaitable);
            }
            if (ec) {
                if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
                    ec == net::error::operation_aborted || ec == net::error::connection_reset ||
                    ec == net::error::eof || ec == net::ssl::error::stream_truncated) {
                    co_return;
                }
                response_t res = ec == http::error::body_limit
                                     ? error_json(admin_error::payload_too_large,
                                                  "the body is larger than " +
                                                      std::to_string(cfg.max_body_bytes) + " bytes",
                                                  11)
                                 : ec == http::error::header_limit
                                     ? error_json(admin_error::header_too_large,
                                                  "the request header is too large", 11)
                                     : error_json(admin_error::bad_request,
                                                  "cannot read the request: " + ec.message(), 11);
                res.keep_alive(false);
                res.prepare_payload();
                beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
                co_await http::async_write(stream, res, nothrow_awaitable);
                co_return;
            }
            auto req = parser.release();
            auto res = co_await handle(req);
            if (!res) {
                beast::get_lowest_layer(stream).expires_never();
                co_await stream_events(stream, req);
                co_return;
            }
            const bool keep = req.keep_alive() && !stopped;
            res->keep_alive(keep);
            res->prepare_payload();
            if (req.method() == http::verb::head) {
                res->body().clear();
            }
            beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
            auto [wec, wn] = co_await http::async_write(stream, *res, nothrow_awaitable);
            if (wec || !keep) {
                co_return;
            }
        }
    }

    net::awaitable<void> session(tcp::socket socket) {
        beast::tcp_stream tcp_stream(std::move(socket));
        if (!tls) {
            auto it = sessions.insert(sessions.end(), [&tcp_stream] { tcp_stream.cancel(); });
            co_await serve(tcp_stream);
            sessions.erase(it);
            boost::system::error_code ignored;
            tcp_stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
            co_return;
        }
        beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), *tls);
        auto it = sessions.insert(sessions.end(),
                                  [&stream] { beast::get_lowest_layer(stream).cancel(); });
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
        auto [hec] = co_await stream.async_handshake(net::ssl::stream_base::server,
                                                     nothrow_awaitable);
        if (!hec) {
            co_await serve(stream);
            beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
            co_await stream.async_shutdown(nothrow_awaitable);
        }
        sessions.erase(it);
    }

    net::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, socket] = co_await acceptor.async_accept(nothrow_awaitable);
            if (!acceptor.is_open() || stopped) {
                co_return;
            }
            if (ec) {
                // EMFILE and friends: retrying at once spun the control thread at 100 % while
                // descriptors were out. Back off as the workers do.
                net::steady_timer pause(io, std::chrono::milliseconds(50));
                co_await pause.async_wait(nothrow_awaitable);
                continue;
            }
            net::co_spawn(io, session(std::move(socket)), net::detached);
        }
    }
};

std::span<const admin_server::impl::route> admin_server::impl::routes() {
    using v = http::verb;
    constexpr auto open = role::anyone;
    constexpr auto scrape = role::scraper;
    constexpr auto viewer = role::viewer;
    constexpr auto op = role::operator_;
    constexpr bool leader = true;  // a follower forwards it to the leader
    constexpr bool local = false;
    // The methods on one path come in the order their Allow header lists them.
    // clang-format off
    static const route table[] = {
        // method  pattern                               role    where   handler; fields, command
        {v::get,  "/healthz",                            open,   local,  &impl::on_healthz},
        {v::get,  "/readyz",                             open,   local,  &impl::on_readyz},
        {v::get,  "/metrics",                            scrape, local,  &impl::on_metrics},
        {v::get,  "/api/v1/models",                      viewer, local,  &impl::on_models},
        {v::get,  "/api/v1/models/{model}",              viewer, local,  &impl::on_model},
        {v::get,  "/api/v1/models/{model}/metrics",      viewer, local,  &impl::on_model_metrics},
        {v::get,  "/api/v1/rollouts",                    viewer, local,  &impl::on_rollouts},
        {v::post, "/api/v1/rollouts",                    op,     leader, &impl::on_start_rollout,
         {"model", "rollout"}},
        {v::get,  "/api/v1/rollouts/{model}",            viewer, local,  &impl::on_rollout},
        {v::post, "/api/v1/rollouts/{model}/pause",      op,     leader, &impl::on_command,
         {}, "pause"},
        {v::post, "/api/v1/rollouts/{model}/resume",     op,     leader, &impl::on_command,
         {}, "resume"},
        {v::post, "/api/v1/rollouts/{model}/promote",    op,     leader, &impl::on_command,
         {"full"}, "promote"},
        {v::post, "/api/v1/rollouts/{model}/rollback",   op,     leader, &impl::on_command,
         {}, "rollback"},
        {v::post, "/api/v1/rollouts/{model}/abort",      op,     leader, &impl::on_command,
         {}, "abort"},
        {v::post, "/api/v1/rollouts/{model}/restart",    op,     leader, &impl::on_command,
         {}, "restart"},
        {v::put,  "/api/v1/rollouts/{model}/weight",     op,     leader, &impl::on_command,
         {"weight_bp", "percent"}, "set_weight"},
        {v::get,  "/api/v1/rollouts/{model}/events",     viewer, local,  &impl::on_rollout_events},
        {v::get,  "/api/v1/rollouts/{model}/report",     viewer, local,  &impl::on_rollout_report},
        {v::get,  "/api/v1/events",                      viewer, local,  &impl::on_events},
        {v::get,  "/api/v1/webhooks",                    viewer, local,  &impl::on_webhooks},
        {v::post, "/api/v1/config/reload",               op,     local,  &impl::on_reload},
        {v::post, "/api/v1/feedback",                    op,     local,  &impl::on_feedback,
         {"request_id", "label", "labels"}},
        {v::get,  "/api/v1/openapi.json",                viewer, local,  &impl::on_openapi},
        {v::get,  "/api/v1/cluster",                     viewer, local,  &impl::on_cluster},
        {v::get,  "/api/v1/whoami",                      viewer, local,  &impl::on_whoami},
        // The dashboard (ui_assets): its page and files need no token, its calls do.
        {v::get,  "/",                                   open,   local,  &impl::on_ui_page},
        {v::get,  "/ui",                                 open,   local,  &impl::on_ui_page},
        {v::get,  "/ui/{file}",                          open,   local,  &impl::on_ui_file},
    };
    // clang-format on
    return table;
}

std::vector<admin_server::operation> admin_server::operations() {
    std::vector<operation> out;
    for (const auto& r : impl::routes()) {
        std::string method(http::to_string(r.method));
        std::transform(method.begin(), method.end(), method.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        out.push_back({std::move(method), std::string(r.pattern), r.need == role::operator_});
    }
    return out;
}

admin_server::admin_server(net::io_context& io, control::plane& gw)
    : impl_(std::make_unique<impl>(io, gw)) {}

admin_server::~admin_server() = default;

result<std::uint16_t> admin_server::listen(const config::admin& cfg) {
    auto& im = *impl_;
    im.cfg = cfg;
    auto tokens = token_table::load(cfg.tokens);
    if (!tokens) {
        return tokens.error();
    }
    im.tokens = std::move(*tokens);
    if (im.tokens.open()) {
        log::warn("admin", "the admin API has no tokens: anyone who reaches it may operate rollouts",
                  {{"address", cfg.address}});
    }
    if (cfg.tls) {
        auto ctx = tls_server_context(cfg.tls->cert_file, cfg.tls->key_file);
        if (!ctx) {
            auto e = ctx.error();
            e.message = "admin listener: " + e.message;
            return e;
        }
        im.tls = std::move(*ctx);
    }
    boost::system::error_code ec;
    auto addr = net::ip::make_address(cfg.address == "localhost" ? "127.0.0.1" : cfg.address, ec);
    if (ec) {
        return error::make("bad_admin_listener", "invalid admin address " + cfg.address);
    }
    tcp::endpoint ep(addr, cfg.port);
    auto& a = im.acceptor;
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
        return error::make("bind_failed", "cannot listen on admin " + cfg.address + ":" +
                                              std::to_string(cfg.port) + ": " + ec.message());
    }
    im.gw.on_feed_event([&im](const json& event) { im.broadcast(event); });
    net::co_spawn(im.io, im.accept_loop(), net::detached);
    return a.local_endpoint().port();
}

void admin_server::stop() {
    impl_->stopped = true;
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    for (auto& cancel : impl_->sessions) {
        cancel();
    }
    for (auto* s : impl_->subscribers) {
        s->wake.cancel();
    }
}

}  // namespace stagegate::admin
