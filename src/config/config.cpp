#include "stagegate/config/config.hpp"
#include "stagegate/config/admin_tokens.hpp"
#include "stagegate/core/json.hpp"

#include "stagegate/core/http_client.hpp"
#include "stagegate/core/log.hpp"
#include "stagegate/core/secret_file.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

namespace stagegate::config {
namespace {

using json = nlohmann::json;

// JSON pointer escaping (RFC 6901) for keys used in problem paths.
std::string escape_key(std::string_view key) {
    std::string out;
    for (char c : key) {
        if (c == '~') {
            out += "~0";
        } else if (c == '/') {
            out += "~1";
        } else {
            out += c;
        }
    }
    return out;
}

const char* type_name(const json& j) { return j.type_name(); }

// Reads one JSON object, recording every problem instead of stopping at the first.
class object_reader {
public:
    object_reader(const json& j, std::string path, std::vector<problem>& problems)
        : j_(j), path_(std::move(path)), problems_(problems) {
        ok_ = j_.is_object();
        if (!ok_) {
            fail("", std::string("expected an object, got ") + type_name(j_));
        }
    }

    bool ok() const { return ok_; }
    const std::string& path() const { return path_; }
    std::string child(std::string_view key) const { return path_ + "/" + escape_key(key); }

    void fail(std::string_view key, std::string message) {
        problems_.push_back({key.empty() ? path_ : child(key), std::move(message)});
    }

    const json* find(std::string_view key) const {
        if (!ok_) {
            return nullptr;
        }
        auto it = j_.find(key);
        return it == j_.end() ? nullptr : &*it;
    }

    // Every key not in `known` is a problem: a typo must not silently fall back to a default.
    void reject_unknown(std::initializer_list<std::string_view> known) {
        if (!ok_) {
            return;
        }
        for (const auto& [key, value] : j_.items()) {
            bool found = false;
            for (auto k : known) {
                found = found || k == key;
            }
            if (!found) {
                fail(key, "unknown key");
            }
        }
    }

    void string(std::string_view key, std::string& out, bool required) {
        const json* v = find(key);
        if (!v) {
            if (required && ok_) {
                fail(key, "required string is missing");
            }
            return;
        }
        if (!v->is_string()) {
            fail(key, std::string("expected a string, got ") + type_name(*v));
            return;
        }
        out = v->get<std::string>();
        if (required && out.empty()) {
            fail(key, "must not be empty");
        }
    }

    void boolean(std::string_view key, bool& out) {
        const json* v = find(key);
        if (!v) {
            return;
        }
        if (!v->is_boolean()) {
            fail(key, std::string("expected true or false, got ") + type_name(*v));
            return;
        }
        out = v->get<bool>();
    }

    template <class Int>
    void integer(std::string_view key, Int& out, std::uint64_t min, std::uint64_t max,
                 bool required = false) {
        const json* v = find(key);
        if (!v) {
            if (required && ok_) {
                fail(key, "required integer is missing");
            }
            return;
        }
        if (!v->is_number_integer() || (v->is_number_integer() && !v->is_number_unsigned())) {
            if (v->is_number_integer() && v->get<std::int64_t>() < 0) {
                fail(key, "must not be negative");
            } else {
                fail(key, std::string("expected a non-negative integer, got ") + type_name(*v));
            }
            return;
        }
        auto n = v->get<std::uint64_t>();
        if (n < min || n > max) {
            fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                          ", got " + std::to_string(n));
            return;
        }
        out = static_cast<Int>(n);
    }

    template <class Out>
    void real(std::string_view key, Out& out, double min, double max) {
        const json* v = find(key);
        if (!v) {
            return;
        }
        if (!v->is_number()) {
            fail(key, std::string("expected a number, got ") + type_name(*v));
            return;
        }
        double d = v->get<double>();
        if (!(d >= min && d <= max)) {
            fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
            return;
        }
        out = d;
    }

    void optional_real(std::string_view key, std::optional<double>& out, double min, double max) {
        if (find(key)) {
            double v = 0;
            real(key, v, min, max);
            out = v;
        }
    }

    void duration_ms(std::string_view key, millis& out, std::uint64_t min_ms = 1,
                     std::uint64_t max_ms = 86'400'000) {
        std::uint64_t ms = static_cast<std::uint64_t>(out.count());
        integer(key, ms, min_ms, max_ms);
        out = millis(ms);
    }

    // Calls f(reader) for a nested object, if present.
    template <class F>
    void object(std::string_view key, F&& f) {
        const json* v = find(key);
        if (!v) {
            return;
        }
        object_reader sub(*v, child(key), problems_);
        if (sub.ok()) {
            f(sub);
        }
    }

    // Calls f(element, path) for each element of an array, if present.
    template <class F>
    void array(std::string_view key, F&& f, bool required = false) {
        const json* v = find(key);
        if (!v) {
            if (required && ok_) {
                fail(key, "required array is missing");
            }
            return;
        }
        if (!v->is_array()) {
            fail(key, std::string("expected an array, got ") + type_name(*v));
            return;
        }
        std::size_t i = 0;
        for (const auto& element : *v) {
            f(element, child(key) + "/" + std::to_string(i));
            ++i;
        }
    }

    std::vector<problem>& problems() { return problems_; }
    const json& value() const { return j_; }

private:
    const json& j_;
    std::string path_;
    std::vector<problem>& problems_;
    bool ok_ = false;
};

void read_endpoint(const json& j, const std::string& path, endpoint& out,
                   std::vector<problem>& problems) {
    // "host:port", or {"address": "host:port"}.
    std::string text;
    if (j.is_string()) {
        text = j.get<std::string>();
    } else if (j.is_object()) {
        object_reader r(j, path, problems);
        r.reject_unknown({"address"});
        r.string("address", text, true);
        if (text.empty()) {
            return;
        }
    } else {
        problems.push_back({path, std::string("expected \"host:port\", got ") + type_name(j)});
        return;
    }
    if (!parse_host_port(text, out)) {
        problems.push_back({path, "expected \"host:port\" with a port in 1..65535, got \"" +
                                      text + "\""});
    }
}

void read_version(const json& j, const std::string& path, version& v,
                  std::vector<problem>& problems) {
    object_reader r(j, path, problems);
    if (!r.ok()) {
        return;
    }
    r.reject_unknown({"name", "endpoints", "tls", "trained_at", "protocol"});
    r.string("name", v.name, true);
    std::string protocol;
    r.string("protocol", protocol, false);
    if (protocol == "h2c") {
        v.protocol = upstream_protocol::h2c;
    } else if (protocol == "h2") {
        v.protocol = upstream_protocol::h2;
    } else if (!protocol.empty() && protocol != "http1") {
        r.fail("protocol", "expected \"http1\" (the default), \"h2c\" (cleartext HTTP/2) or "
                           "\"h2\" (HTTP/2 over TLS), got \"" + protocol + "\"");
    }
    std::string trained_at;
    r.string("trained_at", trained_at, false);
    if (!trained_at.empty()) {
        v.trained_at = parse_rfc3339(trained_at);
        if (!v.trained_at) {
            r.fail("trained_at", "expected an RFC 3339 time such as 2026-11-01T12:00:00Z");
        }
    }
    r.array(
        "endpoints",
        [&](const json& e, const std::string& p) {
            endpoint ep;
            read_endpoint(e, p, ep, problems);
            v.endpoints.push_back(ep);
        },
        true);
    if (r.find("endpoints") && v.endpoints.empty() && r.find("endpoints")->is_array()) {
        r.fail("endpoints", "needs at least one endpoint");
    }
    r.object("tls", [&](object_reader& t) {
        t.reject_unknown({"verify", "ca_file", "server_name", "cert_file", "key_file"});
        upstream_tls tls;
        t.boolean("verify", tls.verify);
        t.string("ca_file", tls.ca_file, false);
        t.string("server_name", tls.server_name, false);
        t.string("cert_file", tls.cert_file, false);
        t.string("key_file", tls.key_file, false);
        if (tls.cert_file.empty() != tls.key_file.empty()) {
            t.fail(tls.cert_file.empty() ? "cert_file" : "key_file",
                   "a client certificate needs both cert_file and key_file");
        }
        v.tls = tls;
    });
    if (v.tls && v.protocol == upstream_protocol::h2c) {
        r.fail("protocol", "\"h2c\" is cleartext HTTP/2: drop \"tls\", or use \"h2\" for "
                           "HTTP/2 over TLS");
    }
    // HTTP/2 over TLS without a "tls" block: TLS with its defaults (the system's trust store,
    // the endpoint's host verified), as an https URL would get.
    if (!v.tls && v.protocol == upstream_protocol::h2) {
        v.tls = upstream_tls{};
    }
}

// "p99" -> 0.99
bool parse_quantile(std::string_view key, double& q) {
    if (key.size() < 2 || key[0] != 'p') {
        return false;
    }
    try {
        std::size_t used = 0;
        double pct = std::stod(std::string(key.substr(1)), &used);
        if (used != key.size() - 1 || !(pct > 0 && pct < 100)) {
            return false;
        }
        q = std::round(pct * 1e4) / 1e6;  // canonical: "p99.9" is exactly the double 0.999
        return true;
    } catch (...) {
        return false;
    }
}

void read_quantile_map(object_reader& r, std::string_view key, std::map<double, double>& out,
                       double min, double max) {
    r.object(key, [&](object_reader& q) {
        for (const auto& [name, value] : r.find(key)->items()) {
            double quantile = 0;
            if (!parse_quantile(name, quantile)) {
                q.fail(name, "expected a quantile name like p50, p90, p99 or p99.9");
                continue;
            }
            double v = 0;
            q.real(name, v, min, max);
            out[quantile] = v;
        }
    });
}

void read_url(object_reader& r, std::string_view key, std::string& out, bool required) {
    r.string(key, out, required);
    if (!out.empty()) {
        if (auto url = parse_http_url(out); !url) {
            r.fail(key, url.error().message);
        }
    }
}

void read_checks(object_reader& r, std::string_view key, std::vector<http_check>& out,
                 std::vector<problem>& problems) {
    r.array(key, [&](const json& e, const std::string& p) {
        object_reader cr(e, p, problems);
        if (!cr.ok()) {
            return;
        }
        cr.reject_unknown({"url", "timeout_ms", "on_failure"});
        http_check c;
        read_url(cr, "url", c.url, true);
        cr.duration_ms("timeout_ms", c.timeout, 1, 600000);
        std::string action = "hold";
        cr.string("on_failure", action, false);
        if (action != "hold" && action != "rollback") {
            cr.fail("on_failure", "expected \"hold\" or \"rollback\"");
        }
        c.rollback_on_failure = action == "rollback";
        out.push_back(std::move(c));
    });
}

void read_rollout(object_reader& r, rollout& ro, std::vector<problem>& problems) {
    ro.source = r.value().dump();
    r.reject_unknown({"candidate", "stages", "gates", "interval_ms",
                      "fast_rollback_consecutive_errors", "pre_checks", "post_checks", "mirror"});
    r.object("mirror", [&](object_reader& m) {
        m.reject_unknown({"max_in_flight", "queue"});
        m.integer("max_in_flight", ro.mirror_max_in_flight, 1, 100000);
        m.integer("queue", ro.mirror_queue, 0, 1000000);
    });
    read_checks(r, "pre_checks", ro.pre_checks, problems);
    read_checks(r, "post_checks", ro.post_checks, problems);
    r.string("candidate", ro.candidate, true);
    r.duration_ms("interval_ms", ro.interval, 100);
    r.integer("fast_rollback_consecutive_errors", ro.fast_rollback_consecutive_errors, 0, 100000);
    r.array(
        "stages",
        [&](const json& e, const std::string& p) {
            rollout_stage st;
            object_reader sr(e, p, problems);
            if (sr.ok()) {
                sr.reject_unknown({"name", "weight_bp", "mirror_percent", "min_bake_ms",
                                   "min_requests", "max_duration_ms", "on_max_duration",
                                   "approval", "checks"});
                sr.boolean("approval", st.approval);
                read_checks(sr, "checks", st.checks, problems);
                sr.string("name", st.name, false);
                double mirror_percent = 0;
                sr.real("mirror_percent", mirror_percent, 0, 100);
                st.mirror = static_cast<std::uint32_t>(std::lround(mirror_percent * 100));
                std::uint64_t weight = st.weight;
                sr.integer("weight_bp", weight, 0, std::uint64_t{1} << 40, st.mirror == 0);
                if (weight > total_weight || (sr.find("weight_bp") && weight == 0 && st.mirror == 0)) {
                    sr.fail("weight_bp", "must be between 1 and 10000 (0 only with mirror_percent)");
                } else {
                    st.weight = static_cast<std::uint32_t>(weight);
                }
                sr.duration_ms("min_bake_ms", st.min_bake, 0);
                sr.integer("min_requests", st.min_requests, 1, std::uint64_t{1} << 40);
                if (sr.find("max_duration_ms")) {
                    millis d{0};
                    sr.duration_ms("max_duration_ms", d, 1);
                    st.max_duration = d;
                }
                std::string action = "hold";
                sr.string("on_max_duration", action, false);
                if (action != "hold" && action != "rollback" && action != "complete") {
                    sr.fail("on_max_duration", "expected \"hold\", \"rollback\" or \"complete\"");
                }
                st.rollback_on_max_duration = action == "rollback";
                st.complete_on_max_duration = action == "complete";
            }
            if (st.name.empty() && st.weight == 0) {
                st.name = "shadow";
            } else if (st.name.empty()) {
                char label[32];
                std::snprintf(label, sizeof label, "canary-%g", st.weight / 100.0);
                st.name = label;
            }
            ro.stages.push_back(std::move(st));
        },
        true);
    r.object("gates", [&](object_reader& g) {
        auto& gt = ro.gates;
        g.reject_unknown({"min_requests", "max_error_rate", "max_upstream_failure_rate",
                          "max_latency_ms", "max_error_rate_delta", "max_error_rate_ratio",
                          "max_latency_ratio", "latency_slack_ms", "client_errors",
                          "max_ttft_ms", "max_ttft_ratio", "max_time_per_token_ms",
                          "max_time_per_token_ratio", "min_tokens_per_second",
                          "min_tokens_per_second_ratio",
                          "prove_every_stage", "sequential", "errors", "predictions"});
        g.object("predictions", [&](object_reader& pg) {
            pg.reject_unknown({"min_samples", "min_agreement", "max_psi", "max_ks",
                               "max_accuracy_drop", "max_mae_increase",
                               "max_candidate_age_hours"});
            pg.integer("min_samples", gt.min_samples, 1, std::uint64_t{1} << 40);
            pg.optional_real("min_agreement", gt.min_agreement, 0, 1);
            pg.optional_real("max_psi", gt.max_psi, 0, 100);
            pg.optional_real("max_ks", gt.max_ks, 0, 1);
            pg.optional_real("max_accuracy_drop", gt.max_accuracy_drop, 0, 1);
            pg.optional_real("max_mae_increase", gt.max_mae_increase, 0, 1e12);
            if (pg.find("max_candidate_age_hours")) {
                std::uint32_t hours = 0;
                pg.integer("max_candidate_age_hours", hours, 1, 24 * 365 * 10);
                gt.max_candidate_age = std::chrono::hours(hours);
            }
        });
        if (g.find("errors")) {
            gt.error_statuses.clear();
        }
        g.array("errors", [&](const json& e, const std::string& p) {
            if (!e.is_string()) {
                problems.push_back({p, "expected \"5xx\", \"4xx\" or a status code string"});
                return;
            }
            gt.error_statuses.push_back(e.get<std::string>());
        });
        g.integer("min_requests", gt.min_requests, 1, std::uint64_t{1} << 40);
        g.optional_real("max_error_rate", gt.max_error_rate, 0, 1);
        g.optional_real("max_upstream_failure_rate", gt.max_upstream_failure_rate, 0, 1);
        std::map<double, double> latency_ms;
        read_quantile_map(g, "max_latency_ms", latency_ms, 0.001, 3.6e6);
        for (const auto& [q, ms] : latency_ms) {
            gt.max_latency_seconds[q] = ms / 1000.0;
        }
        g.optional_real("max_error_rate_delta", gt.max_error_rate_delta, 0, 1);
        g.optional_real("max_error_rate_ratio", gt.max_error_rate_ratio, 1, 1e6);
        read_quantile_map(g, "max_latency_ratio", gt.max_latency_ratio, 1, 1e6);
        auto read_ms = [&](const char* key, std::map<double, double>& seconds) {
            std::map<double, double> ms;
            read_quantile_map(g, key, ms, 0.001, 3.6e6);
            for (const auto& [q, v] : ms) {
                seconds[q] = v / 1000.0;
            }
        };
        read_ms("max_ttft_ms", gt.max_ttft_seconds);
        read_quantile_map(g, "max_ttft_ratio", gt.max_ttft_ratio, 1, 1e6);
        read_ms("max_time_per_token_ms", gt.max_time_per_token_seconds);
        read_quantile_map(g, "max_time_per_token_ratio", gt.max_time_per_token_ratio, 1, 1e6);
        read_quantile_map(g, "min_tokens_per_second", gt.min_tokens_per_second, 0.001, 1e6);
        // A floor relative to stable: a ratio above 1 would ask the candidate to stream faster
        // than stable, one of 0 asks nothing.
        g.object("min_tokens_per_second_ratio", [&](object_reader& q) {
            for (const auto& [name, value] : g.find("min_tokens_per_second_ratio")->items()) {
                double quantile = 0;
                if (!parse_quantile(name, quantile)) {
                    q.fail(name, "expected a quantile name like p10, p50 or p90");
                    continue;
                }
                if (!value.is_number() || !(value.get<double>() > 0 && value.get<double>() <= 1)) {
                    q.fail(name, "must be a ratio above 0 and at most 1 (the candidate's rate "
                                 "at least stable's x ratio)");
                    continue;
                }
                gt.min_tokens_per_second_ratio[quantile] = value.get<double>();
            }
        });
        double slack_ms = gt.latency_slack_seconds * 1000.0;
        g.real("latency_slack_ms", slack_ms, 0, 3.6e6);
        gt.latency_slack_seconds = slack_ms / 1000.0;
        g.boolean("client_errors", gt.client_errors);
        g.boolean("prove_every_stage", gt.prove_every_stage);
        g.object("sequential", [&](object_reader& sq) {
            sq.reject_unknown({"errors", "latency", "alpha", "beta"});
            sq.boolean("errors", gt.sequential_errors);
            sq.boolean("latency", gt.sequential_latency);
            sq.real("alpha", gt.alpha, 1e-9, 0.5);
            sq.real("beta", gt.beta, 1e-9, 0.5);
        });
    });
}

void read_pointer(object_reader& r, std::string_view key, std::string& out) {
    r.string(key, out, false);
    if (!out.empty() && out.front() != '/') {
        r.fail(key, "expected a JSON pointer such as \"/predictions/0\"");
    }
}

void read_predictions(object_reader& r, predictions& p) {
    r.reject_unknown({"preset", "label", "value", "bins", "max_body_bytes", "feedback"});
    r.string("preset", p.preset, false);
    if (p.preset == "tfserving") {
        p.label = p.value = "/predictions/0";
    } else if (p.preset == "kserve_v2") {
        p.label = p.value = "/outputs/0/data";
    } else if (p.preset == "openai") {
        p.label = "/choices/0/finish_reason";
        p.value = "/choices/0/message/content";
        p.bins_max = 4000;  // characters
    } else if (!p.preset.empty()) {
        r.fail("preset", "expected \"tfserving\", \"kserve_v2\" or \"openai\"");
    }
    read_pointer(r, "label", p.label);
    read_pointer(r, "value", p.value);
    if (r.ok() && p.label.empty() && p.value.empty()) {
        r.fail("", "needs a preset, a \"label\" pointer or a \"value\" pointer");
    }
    r.object("bins", [&](object_reader& b) {
        b.reject_unknown({"min", "max", "count"});
        b.real("min", p.bins_min, -1e15, 1e15);
        b.real("max", p.bins_max, -1e15, 1e15);
        b.integer("count", p.bins, 2, 32);
        if (!(p.bins_max > p.bins_min)) {
            b.fail("max", "must be above min");
        }
    });
    r.integer("max_body_bytes", p.max_body_bytes, 64, std::uint64_t{64} << 20);
    r.object("feedback", [&](object_reader& f) {
        f.reject_unknown({"ttl_seconds", "max_pending"});
        p.feedback = true;
        std::uint32_t ttl = static_cast<std::uint32_t>(p.feedback_ttl.count());
        f.integer("ttl_seconds", ttl, 1, 90 * 86400);
        p.feedback_ttl = std::chrono::seconds(ttl);
        f.integer("max_pending", p.feedback_capacity, 1, 10'000'000);
    });
}

void read_tls_server(object_reader& t, std::optional<tls_server>& out) {
    t.reject_unknown({"cert_file", "key_file"});
    tls_server tls;
    t.string("cert_file", tls.cert_file, true);
    t.string("key_file", tls.key_file, true);
    out = tls;
}

void read_admin(object_reader& a, admin& out, std::vector<problem>& problems) {
    a.reject_unknown({"enabled", "address", "port", "tls", "tokens", "metrics_auth",
                      "max_body_bytes"});
    a.boolean("enabled", out.enabled);
    a.string("address", out.address, false);
    a.integer("port", out.port, 0, 65535);
    a.integer("max_body_bytes", out.max_body_bytes, 1024, std::uint64_t{64} << 20);
    a.object("tls", [&](object_reader& t) { read_tls_server(t, out.tls); });
    std::string metrics_auth = "open";
    a.string("metrics_auth", metrics_auth, false);
    if (metrics_auth != "open" && metrics_auth != "token") {
        a.fail("metrics_auth", "expected \"open\" or \"token\"");
    }
    out.metrics_need_token = metrics_auth == "token";
    a.array("tokens", [&](const json& e, const std::string& p) {
        object_reader tr(e, p, problems);
        if (!tr.ok()) {
            return;
        }
        tr.reject_unknown({"name", "role", "file"});
        admin_token t;
        tr.string("name", t.name, true);
        tr.string("file", t.file, true);
        std::string role;
        tr.string("role", role, true);
        if (role == "operator") {
            t.role = admin_role::operator_;
        } else if (role == "viewer") {
            t.role = admin_role::viewer;
        } else if (!role.empty()) {
            tr.fail("role", "expected \"viewer\" or \"operator\"");
        }
        out.tokens.push_back(std::move(t));
    });
}

void read_model(const json& j, const std::string& path, model& m,
                std::vector<problem>& problems) {
    object_reader r(j, path, problems);
    if (!r.ok()) {
        return;
    }
    r.reject_unknown({"name", "match", "versions", "stable", "traffic", "timeouts",
                      "passive_health", "rollout", "max_version_age_hours", "predictions"});
    r.object("predictions", [&](object_reader& pr) {
        predictions p;
        read_predictions(pr, p);
        m.prediction = std::move(p);
    });
    if (r.find("max_version_age_hours")) {
        std::uint32_t hours = 0;
        r.integer("max_version_age_hours", hours, 1, 24 * 365 * 10);
        m.max_version_age = std::chrono::hours(hours);
    }
    r.object("rollout", [&](object_reader& ro) {
        rollout spec;
        read_rollout(ro, spec, problems);
        m.rollout_spec = std::move(spec);
    });
    r.string("name", m.name, true);
    r.object("match", [&](object_reader& mr) {
        mr.reject_unknown({"kserve_v1", "kserve_v2", "openai", "path_prefixes"});
        mr.boolean("kserve_v1", m.route.kserve_v1);
        mr.boolean("kserve_v2", m.route.kserve_v2);
        mr.boolean("openai", m.route.openai);
        mr.array("path_prefixes", [&](const json& e, const std::string& p) {
            if (!e.is_string() || e.get<std::string>().empty() ||
                e.get<std::string>().front() != '/') {
                problems.push_back({p, "expected a path prefix starting with '/'"});
                return;
            }
            m.route.path_prefixes.push_back(e.get<std::string>());
        });
    });
    r.array(
        "versions",
        [&](const json& e, const std::string& p) {
            version v;
            read_version(e, p, v, problems);
            m.versions.push_back(std::move(v));
        },
        true);
    r.string("stable", m.stable, true);
    r.object("traffic", [&](object_reader& t) {
        t.reject_unknown({"weights", "stage", "sticky", "allow_force_version"});
        t.object("weights", [&](object_reader& w) {
            for (const auto& [name, value] : t.find("weights")->items()) {
                std::uint32_t bp = 0;
                w.integer(name, bp, 0, total_weight);
                m.split.weights[name] = bp;
            }
        });
        t.string("stage", m.split.stage, false);
        t.object("sticky", [&](object_reader& s) {
            s.reject_unknown({"header", "cookie"});
            s.string("header", m.split.sticky_key.header, false);
            s.string("cookie", m.split.sticky_key.cookie, false);
        });
        t.boolean("allow_force_version", m.split.allow_force_version);
    });
    r.object("timeouts", [&](object_reader& t) {
        t.reject_unknown({"connect_ms", "first_byte_ms", "stream_idle_ms", "total_ms"});
        t.duration_ms("connect_ms", m.timeouts.connect);
        t.duration_ms("first_byte_ms", m.timeouts.first_byte);
        t.duration_ms("stream_idle_ms", m.timeouts.stream_idle, 0);
        t.duration_ms("total_ms", m.timeouts.total, 0);
    });
    r.object("passive_health", [&](object_reader& h) {
        h.reject_unknown({"max_fails", "fail_timeout_ms"});
        h.integer("max_fails", m.health.max_fails, 0, 1000);
        h.duration_ms("fail_timeout_ms", m.health.fail_timeout, 1);
    });
}

// What is wrong with a metadata key naming gRPC calls' models, if anything: gRPC's keys are
// letters, digits, '-', '_' and '.' (HTTP/2 sends them lowercased; the lookup ignores case);
// "grpc-" ones belong to the protocol, and "-bin" ones carry base64-encoded bytes, not a name.
std::optional<std::string> grpc_model_header_problem(std::string_view name) {
    if (name.empty()) {
        return std::nullopt;  // not set
    }
    const bool key_chars = std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
    });
    std::string lower(name);
    for (auto& c : lower) {
        c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    if (!key_chars || lower.starts_with("grpc-") || lower.ends_with("-bin")) {
        return "expected a gRPC metadata key such as \"x-model-name\" (letters, digits, '-', "
               "'_', '.'; not grpc-* nor *-bin), got \"" + std::string(name) + "\"";
    }
    return std::nullopt;
}

}  // namespace

std::optional<std::int64_t> parse_rfc3339(std::string_view text) {
    // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), scanned here: g++ 12's <chrono> has no
    // std::chrono::parse, and Boost.DateTime's ISO reader takes neither Z nor an offset (and
    // throws); a facet with %z would read through an iostream and a locale for 25 characters.
    auto digits = [&](std::size_t pos, std::size_t n, int& out) {
        if (pos + n > text.size()) {
            return false;
        }
        out = 0;
        for (std::size_t i = pos; i < pos + n; ++i) {
            if (text[i] < '0' || text[i] > '9') {
                return false;
            }
            out = out * 10 + (text[i] - '0');
        }
        return true;
    };
    int year, month, day, hour, minute, second;
    if (text.size() < 20 || !digits(0, 4, year) || text[4] != '-' || !digits(5, 2, month) ||
        text[7] != '-' || !digits(8, 2, day) || (text[10] != 'T' && text[10] != 't') ||
        !digits(11, 2, hour) || text[13] != ':' || !digits(14, 2, minute) || text[16] != ':' ||
        !digits(17, 2, second)) {
        return std::nullopt;
    }
    std::size_t pos = 19;
    if (pos < text.size() && text[pos] == '.') {
        ++pos;
        const auto start = pos;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
            ++pos;
        }
        if (pos == start) {
            return std::nullopt;
        }
    }
    int offset_minutes = 0;
    if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z') && pos + 1 == text.size()) {
    } else if (pos + 6 == text.size() && (text[pos] == '+' || text[pos] == '-')) {
        int oh, om;
        if (!digits(pos + 1, 2, oh) || text[pos + 3] != ':' || !digits(pos + 4, 2, om) ||
            oh > 23 || om > 59) {
            return std::nullopt;
        }
        offset_minutes = (text[pos] == '+' ? 1 : -1) * (oh * 60 + om);
    } else {
        return std::nullopt;
    }
    // The calendar is <chrono>'s (C++20): it knows which Februaries have a 29th, and counts
    // days from the epoch without a time zone database.
    namespace chrono = std::chrono;
    const chrono::year_month_day date{chrono::year{year},
                                      chrono::month{static_cast<unsigned>(month)},
                                      chrono::day{static_cast<unsigned>(day)}};
    if (!date.ok() || hour > 23 || minute > 59 || second > 60) {
        return std::nullopt;
    }
    const std::int64_t days = chrono::sys_days{date}.time_since_epoch().count();
    return days * 86400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
}

bool parse_host_port(std::string_view text, endpoint& out) {
    std::string_view host;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {  // [v6]:port
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() ||
            text[close + 1] != ':') {
            return false;
        }
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos || text.find(':') != colon) {
            return false;
        }
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (host.empty() || port.empty() || ec != std::errc() || end != port.data() + port.size() ||
        value == 0 || value > 65535) {
        return false;
    }
    out.host = std::string(host);
    out.port = static_cast<std::uint16_t>(value);
    return true;
}

std::vector<problem> validate_rollout(const rollout& ro, const std::vector<std::string>& versions,
                                      const std::string& stable, const std::string& rpath) {
    std::vector<problem> problems;
    if (std::find(versions.begin(), versions.end(), ro.candidate) == versions.end()) {
        problems.push_back({rpath + "/candidate", "names no version of this model: \"" +
                                                      ro.candidate + "\""});
    }
    if (ro.candidate == stable) {
        problems.push_back({rpath + "/candidate", "must differ from the stable version"});
    }
    if (ro.stages.empty()) {
        problems.push_back({rpath + "/stages", "needs at least one stage"});
    }
    std::set<std::string> stage_names;
    for (std::size_t si = 0; si < ro.stages.size(); ++si) {
        const auto& st = ro.stages[si];
        const std::string spath = rpath + "/stages/" + std::to_string(si);
        if (st.weight > total_weight || (st.weight == 0 && st.mirror == 0)) {
            problems.push_back({spath + "/weight_bp", st.weight == 0
                                                          ? "must be between 1 and 10000 (0 only "
                                                            "with mirror_percent)"
                                                          : "must be between 1 and 10000"});
        }
        if (st.mirror > total_weight) {
            problems.push_back({spath + "/mirror_percent", "must be between 0 and 100"});
        }
        if (si > 0 && st.weight <= ro.stages[si - 1].weight) {
            problems.push_back(
                {spath + "/weight_bp", "stages must widen: weight must exceed the previous stage's"});
        }
        if (!stage_names.insert(st.name).second) {
            problems.push_back({spath + "/name", "duplicate stage name"});
        }
        // At 100 % stable serves nothing: the candidate is judged against stable's figures from
        // the stages before, so there must be one, and the stage must end on its own.
        if (st.weight == total_weight && si == 0) {
            problems.push_back({spath + "/weight_bp",
                                "the first stage cannot send 100 % to the candidate: there would "
                                "be no stable traffic to judge it against (start lower)"});
        }
        if (st.weight == total_weight &&
            (!st.max_duration || (!st.rollback_on_max_duration && !st.complete_on_max_duration))) {
            problems.push_back({spath + "/max_duration_ms",
                                "a stage at 100 % must end on its own: set max_duration_ms and "
                                "on_max_duration \"rollback\" or \"complete\" (what happens if "
                                "its gates have not passed by then)"});
        }
        if (st.name == "stable" || st.name == "rolled-back" || st.name == "aborted" ||
            st.name == "pre-checks") {
            problems.push_back({spath + "/name", "\"" + st.name + "\" is reserved"});
        }
    }
    static const std::set<std::string> statuses = {"4xx", "5xx", "400", "404", "429",
                                                   "500", "502", "503", "504"};
    if (ro.gates.error_statuses.empty()) {
        problems.push_back({rpath + "/gates/errors", "needs at least one status"});
    }
    for (std::size_t i = 0; i < ro.gates.error_statuses.size(); ++i) {
        if (!statuses.count(ro.gates.error_statuses[i])) {
            problems.push_back({rpath + "/gates/errors/" + std::to_string(i),
                                "expected 4xx, 5xx or one of the tracked codes 400, 404, 429, "
                                "500, 502, 503, 504"});
        }
    }
    return problems;
}

std::vector<problem> prediction_gate_problems(const rollout& ro,
                                              const std::optional<predictions>& pred,
                                              const std::string& rpath) {
    std::vector<problem> problems;
    const auto& g = ro.gates;
    const std::string gpath = rpath + "/gates/predictions";
    auto need = [&](bool ok, const char* key, const char* why) {
        if (!ok) {
            problems.push_back({gpath + "/" + key, why});
        }
    };
    const bool any_mirror = std::any_of(ro.stages.begin(), ro.stages.end(),
                                        [](const rollout_stage& s) { return s.mirror > 0; });
    if (g.min_agreement) {
        need(pred && !pred->label.empty(), "min_agreement",
             "needs the model's predictions with a label pointer");
        need(any_mirror, "min_agreement", "needs a stage with mirror_percent");
    }
    if (g.max_psi) {
        need(pred.has_value(), "max_psi", "needs the model's predictions");
    }
    if (g.max_ks) {
        need(pred && !pred->value.empty(), "max_ks",
             "needs the model's predictions with a value pointer");
    }
    if (g.max_accuracy_drop) {
        need(pred && pred->feedback && !pred->label.empty(), "max_accuracy_drop",
             "needs the model's predictions with a label pointer and feedback");
    }
    if (g.max_mae_increase) {
        need(pred && pred->feedback && !pred->value.empty(), "max_mae_increase",
             "needs the model's predictions with a value pointer and feedback");
    }
    return problems;
}

std::vector<problem> validate(const gateway& cfg) {
    std::vector<problem> problems;
    if (cfg.listeners.empty()) {
        problems.push_back({"/listeners", "at least one listener is required"});
    }
    for (std::size_t i = 0; i < cfg.listeners.size(); ++i) {
        const auto& l = cfg.listeners[i];
        if (l.tls && (l.tls->cert_file.empty() || l.tls->key_file.empty())) {
            problems.push_back(
                {"/listeners/" + std::to_string(i) + "/tls", "needs cert_file and key_file"});
        }
    }
    if (auto why = grpc_model_header_problem(cfg.grpc.model_header)) {
        problems.push_back({"/grpc/model_header", *why});
    }
    const auto& adm = cfg.admin_listener;
    if (adm.enabled && adm.tokens.empty() && adm.address != "127.0.0.1" &&
        adm.address != "::1" && adm.address != "localhost") {
        problems.push_back({"/admin/tokens", "an admin listener on a non-loopback address (" +
                                                 adm.address + ") needs tokens"});
    }
    std::set<std::string> webhook_names;
    for (std::size_t i = 0; i < cfg.webhooks.size(); ++i) {
        if (!webhook_names.insert(cfg.webhooks[i].name).second) {
            problems.push_back({"/notifications/webhooks/" + std::to_string(i) + "/name",
                                "duplicate webhook name \"" + cfg.webhooks[i].name + "\""});
        }
    }
    std::set<std::string> token_names;
    for (std::size_t i = 0; i < adm.tokens.size(); ++i) {
        if (!token_names.insert(adm.tokens[i].name).second) {
            problems.push_back({"/admin/tokens/" + std::to_string(i) + "/name",
                                "duplicate token name \"" + adm.tokens[i].name + "\""});
        }
    }
    std::set<std::string> model_names;
    std::map<std::string, std::string> prefix_owner;
    for (std::size_t mi = 0; mi < cfg.models.size(); ++mi) {
        const auto& m = cfg.models[mi];
        const std::string mpath = "/models/" + std::to_string(mi);
        if (!m.name.empty() && !model_names.insert(m.name).second) {
            problems.push_back({mpath + "/name", "duplicate model name \"" + m.name + "\""});
        }
        if (m.name.find_first_of("/: ") != std::string::npos) {
            problems.push_back({mpath + "/name", "must not contain '/', ':' or spaces"});
        }
        for (std::size_t pi = 0; pi < m.route.path_prefixes.size(); ++pi) {
            auto [it, fresh] = prefix_owner.emplace(m.route.path_prefixes[pi], m.name);
            if (!fresh) {
                problems.push_back({mpath + "/match/path_prefixes/" + std::to_string(pi),
                                    "prefix already used by model \"" + it->second + "\""});
            }
        }
        std::set<std::string> version_names;
        for (std::size_t vi = 0; vi < m.versions.size(); ++vi) {
            const auto& v = m.versions[vi];
            if (!v.name.empty() && !version_names.insert(v.name).second) {
                problems.push_back({mpath + "/versions/" + std::to_string(vi) + "/name",
                                    "duplicate version name \"" + v.name + "\""});
            }
        }
        if (m.versions.empty()) {
            problems.push_back({mpath + "/versions", "needs at least one version"});
        }
        if (!m.stable.empty() && !version_names.count(m.stable)) {
            problems.push_back({mpath + "/stable", "names no version of this model: \"" +
                                                       m.stable + "\""});
        }
        if (!m.split.weights.empty()) {
            std::uint64_t sum = 0;
            for (const auto& [name, bp] : m.split.weights) {
                sum += bp;
                if (!version_names.count(name)) {
                    problems.push_back({mpath + "/traffic/weights/" + escape_key(name),
                                        "names no version of this model"});
                }
            }
            if (sum != total_weight) {
                problems.push_back({mpath + "/traffic/weights",
                                    "weights are basis points and must sum to 10000, got " +
                                        std::to_string(sum)});
            }
        }
        if (m.rollout_spec) {
            std::vector<std::string> names;
            for (const auto& v : m.versions) {
                names.push_back(v.name);
            }
            auto rp = validate_rollout(*m.rollout_spec, names, m.stable, mpath + "/rollout");
            auto pp = prediction_gate_problems(*m.rollout_spec, m.prediction, mpath + "/rollout");
            rp.insert(rp.end(), pp.begin(), pp.end());
            problems.insert(problems.end(), rp.begin(), rp.end());
            if (!m.split.weights.empty()) {
                problems.push_back({mpath + "/traffic/weights",
                                    "a model with a rollout gets its weights from the rollout"});
            }
        }
        if (m.timeouts.total.count() > 0 && m.timeouts.first_byte > m.timeouts.total) {
            problems.push_back({mpath + "/timeouts/first_byte_ms", "must not exceed total_ms"});
        }
        if (m.timeouts.total.count() == 0 && m.timeouts.stream_idle.count() == 0) {
            problems.push_back({mpath + "/timeouts/stream_idle_ms",
                                "must be above 0 when total_ms is 0: an answer that stalls would "
                                "hold its connections forever"});
        }
        if (!m.route.kserve_v1 && !m.route.kserve_v2 && !m.route.openai &&
            m.route.path_prefixes.empty()) {
            problems.push_back({mpath + "/match", "matches no request"});
        }
    }
    return problems;
}

result<gateway> parse(std::string_view json_text) {
    std::string why;
    json root = parse_json(json_text, &why, /*comments=*/true);
    if (root.is_discarded() && why != "not JSON") {
        return error{"invalid_json", "the config is not valid JSON", {{"", why}}};
    }
    if (root.is_discarded()) {
        // Re-parse with exceptions only to learn where it broke; this is the control plane.
        std::string where;
        try {
            json ignored = json::parse(json_text, nullptr, true, true);
        } catch (const json::exception& e) {
            where = e.what();
        }
        return error{"invalid_json", "the config is not valid JSON", {{"", where}}};
    }
    std::vector<problem> problems;
    gateway cfg;
    object_reader r(root, "", problems);
    if (r.ok()) {
        r.reject_unknown({"listeners", "admin", "metrics", "state", "workers", "limits",
                          "client_timeouts", "upstream_pool", "models", "grpc", "notifications",
                          "logging"});
        r.object("grpc", [&](object_reader& g) {
            g.reject_unknown({"model_header"});
            g.string("model_header", cfg.grpc.model_header, false);
        });
        r.object("logging", [&](object_reader& l) {
            l.reject_unknown({"level", "access_log"});
            l.string("level", cfg.log.level, false);
            if (!log::parse_level(cfg.log.level)) {
                l.fail("level", "expected debug, info, warn or error, got \"" + cfg.log.level +
                                    "\"");
            }
            l.object("access_log", [&](object_reader& a) {
                a.reject_unknown({"path", "format", "sample"});
                a.string("path", cfg.log.access.path, true);
                a.string("format", cfg.log.access.format, false);
                a.real("sample", cfg.log.access.sample, 0.0, 1.0);
                if (auto bad = access_log_format_problem(cfg.log.access.format)) {
                    a.fail("format", *bad);
                }
            });
        });
        r.object("notifications", [&](object_reader& n) {
            n.reject_unknown({"webhooks"});
            n.array("webhooks", [&](const json& e, const std::string& p) {
                object_reader w(e, p, problems);
                if (!w.ok()) {
                    return;
                }
                w.reject_unknown({"name", "url", "events", "models", "secret_file", "timeout_ms",
                                  "max_attempts", "backoff_ms", "queue_size"});
                webhook h;
                w.string("name", h.name, true);
                read_url(w, "url", h.url, true);
                w.array("events", [&](const json& ev, const std::string& ep) {
                    const bool known =
                        ev.is_string() && parse_event_type(ev.get<std::string>()).has_value();
                    if (!known) {
                        std::string list;
                        for (auto t : event_types) {
                            if (!list.empty()) list += ", ";
                            list += to_string(t);
                        }
                        problems.push_back({ep, "expected an event type: " + list});
                        return;
                    }
                    h.events.push_back(ev.get<std::string>());
                });
                w.array("models", [&](const json& m, const std::string& mp) {
                    if (!m.is_string()) {
                        problems.push_back({mp, "expected a model name"});
                        return;
                    }
                    h.models.push_back(m.get<std::string>());
                });
                w.string("secret_file", h.secret_file, false);
                w.duration_ms("timeout_ms", h.timeout, 1, 600000);
                w.integer("max_attempts", h.max_attempts, 1, 100);
                w.duration_ms("backoff_ms", h.backoff, 1, 600000);
                w.integer("queue_size", h.queue_size, 1, 1000000);
                cfg.webhooks.push_back(std::move(h));
            });
        });
        r.object("state", [&](object_reader& st) {
            st.reject_unknown({"store", "dir", "endpoints", "prefix", "lease_ttl_ms", "replica",
                               "advertise_admin", "ca_file", "cert_file", "key_file",
                               "timeout_ms", "history_ms"});
            std::string store = "file";
            st.string("store", store, false);
            if (store == "file") {
                st.string("dir", cfg.state_dir, true);
                for (const char* key : {"endpoints", "prefix", "lease_ttl_ms", "replica",
                                        "advertise_admin", "ca_file", "cert_file", "key_file",
                                        "timeout_ms", "history_ms"}) {
                    if (st.find(key)) {
                        st.fail(key, "only for \"store\": \"etcd\"");
                    }
                }
                return;
            }
            if (store != "etcd") {
                st.fail("store", "expected \"file\" or \"etcd\"");
                return;
            }
            etcd_store e;
            st.array(
                "endpoints",
                [&](const json& v, const std::string& p) {
                    const bool url = v.is_string() &&
                                     (v.get<std::string>().rfind("http://", 0) == 0 ||
                                      v.get<std::string>().rfind("https://", 0) == 0) &&
                                     parse_http_url(v.get<std::string>(), false);
                    if (!url) {
                        problems.push_back({p, "expected an etcd client URL such as "
                                               "http://127.0.0.1:2379"});
                        return;
                    }
                    e.endpoints.push_back(v.get<std::string>());
                },
                true);
            if (st.find("endpoints") && st.find("endpoints")->is_array() &&
                st.find("endpoints")->empty()) {
                st.fail("endpoints", "needs at least one etcd endpoint");
            }
            st.string("prefix", e.prefix, true);
            if (st.find("prefix") && (e.prefix.empty() || e.prefix.front() != '/' ||
                                      e.prefix.back() == '/')) {
                st.fail("prefix", "expected a key prefix such as /stagegate/prod (a leading "
                                  "slash, no trailing one)");
            }
            st.duration_ms("lease_ttl_ms", e.lease_ttl, 2000, 60000);
            st.duration_ms("timeout_ms", e.timeout, 100, 30000);
            st.duration_ms("history_ms", e.history, 1000, 86400000);
            st.string("replica", e.replica, false);
            st.string("advertise_admin", e.advertise_admin, false);
            if (!e.advertise_admin.empty() && !parse_http_url(e.advertise_admin, false)) {
                st.fail("advertise_admin", "expected the admin API's URL such as "
                                           "http://10.0.0.5:9090");
            }
            st.string("ca_file", e.ca_file, false);
            st.string("cert_file", e.cert_file, false);
            st.string("key_file", e.key_file, false);
            if (e.cert_file.empty() != e.key_file.empty()) {
                st.fail(e.cert_file.empty() ? "cert_file" : "key_file",
                        "give both cert_file and key_file, or neither");
            }
            if (st.find("dir")) {
                st.fail("dir", "only for \"store\": \"file\" (etcd keeps the state)");
            }
            cfg.etcd = std::move(e);
        });
        r.object("metrics", [&](object_reader& m) {
            m.reject_unknown({"enabled"});
            m.boolean("enabled", cfg.record_metrics);
        });
        r.object("admin", [&](object_reader& a) { read_admin(a, cfg.admin_listener, problems); });
        r.array(
            "listeners",
            [&](const json& e, const std::string& p) {
                listener l;
                object_reader lr(e, p, problems);
                if (lr.ok()) {
                    lr.reject_unknown({"address", "port", "tls"});
                    lr.string("address", l.address, false);
                    lr.integer("port", l.port, 0, 65535, true);
                    lr.object("tls", [&](object_reader& t) { read_tls_server(t, l.tls); });
                }
                cfg.listeners.push_back(l);
            },
            true);
        r.integer("workers", cfg.workers, 0, 1024);
        r.object("limits", [&](object_reader& l) {
            l.reject_unknown({"max_header_bytes", "max_request_body_bytes",
                              "max_connections_per_worker", "max_concurrent_streams"});
            l.integer("max_header_bytes", cfg.limit.max_header_bytes, 1024, 1024 * 1024);
            l.integer("max_request_body_bytes", cfg.limit.max_request_body_bytes, 0,
                      std::uint64_t{1} << 32);
            l.integer("max_connections_per_worker", cfg.limit.max_connections_per_worker, 1,
                      10'000'000);
            l.integer("max_concurrent_streams", cfg.limit.max_concurrent_streams, 1, 100'000);
        });
        r.object("client_timeouts", [&](object_reader& t) {
            t.reject_unknown({"idle_ms", "request_ms", "drain_ms", "drain_delay_ms"});
            t.duration_ms("idle_ms", cfg.client.idle);
            t.duration_ms("request_ms", cfg.client.request);
            t.duration_ms("drain_ms", cfg.client.drain, 0);
            t.duration_ms("drain_delay_ms", cfg.client.drain_delay, 0);
        });
        r.object("upstream_pool", [&](object_reader& u) {
            u.reject_unknown({"max_idle_per_endpoint", "idle_timeout_ms", "check_idle"});
            u.boolean("check_idle", cfg.pool.check_idle);
            u.integer("max_idle_per_endpoint", cfg.pool.max_idle_per_endpoint, 0, 100000);
            u.duration_ms("idle_timeout_ms", cfg.pool.idle_timeout);
        });
        r.array(
            "models",
            [&](const json& e, const std::string& p) {
                model m;
                read_model(e, p, m, problems);
                cfg.models.push_back(std::move(m));
            },
            true);
    }
    // Cross-field rules only make sense once the shapes are right.
    if (problems.empty()) {
        problems = validate(cfg);
    }
    if (!problems.empty()) {
        return error{"invalid_config",
                     std::to_string(problems.size()) + " problem(s) in the config",
                     std::move(problems)};
    }
    for (auto& m : cfg.models) {
        if (m.split.weights.empty()) {
            m.split.weights[m.stable] = total_weight;
        }
    }
    return cfg;
}

result<rollout> parse_rollout(std::string_view json_text, const std::string& path) {
    std::string why;
    json root = parse_json(json_text, &why);
    if (root.is_discarded()) {
        return error{"invalid_json", "the rollout is not valid JSON", {{path, why}}};
    }
    std::vector<problem> problems;
    rollout spec;
    object_reader r(root, path, problems);
    if (r.ok()) {
        read_rollout(r, spec, problems);
    }
    if (!problems.empty()) {
        return error{"invalid_rollout", std::to_string(problems.size()) +
                                            " problem(s) in the rollout",
                     std::move(problems)};
    }
    return spec;
}

std::optional<std::string> access_log_format_problem(std::string_view format) {
    if (format == "json") {
        return std::nullopt;
    }
    if (format.empty()) {
        return "must not be empty: \"json\" or a template of %field%s";
    }
    for (std::size_t i = 0; i < format.size(); ++i) {
        if (format[i] != '%') {
            continue;
        }
        const auto close = format.find('%', i + 1);
        if (close == std::string_view::npos) {
            return "a % at offset " + std::to_string(i) + " is not closed: write %field% or %%";
        }
        const auto name = format.substr(i + 1, close - i - 1);
        if (!name.empty() && std::find(access_log_fields.begin(), access_log_fields.end(),
                                       name) == access_log_fields.end()) {
            std::string known;
            for (auto f : access_log_fields) {
                known += (known.empty() ? "" : ", ") + std::string(f);
            }
            return "unknown field %" + std::string(name) + "%; known: " + known;
        }
        i = close;
    }
    return std::nullopt;
}

std::vector<problem> check_files(const gateway& cfg) {
    std::vector<problem> problems;
    if (const auto& path = cfg.log.access.path;
        !path.empty() && path != "stdout" && path != "stderr") {
        std::ofstream out(path, std::ios::app);
        if (!out) {
            problems.push_back({"/logging/access_log/path",
                                "cannot open the access log " + path + " for appending"});
        }
    }
    auto readable = [&](const std::string& file, const std::string& path, const char* what) {
        std::ifstream in(file, std::ios::binary);
        std::string text;
        if (!in || !std::getline(in, text) || text.empty()) {
            problems.push_back({path, std::string("cannot read the ") + what + " file " + file});
        }
    };
    for (std::size_t i = 0; i < cfg.admin_listener.tokens.size(); ++i) {
        const auto& t = cfg.admin_listener.tokens[i];
        auto why = admin_token_problem("admin token \"" + t.name + "\"", t.file,
                                       read_secret_file(t.file));
        if (!why.empty()) {
            problems.push_back({"/admin/tokens/" + std::to_string(i) + "/file", std::move(why)});
        }
    }
    for (std::size_t i = 0; i < cfg.webhooks.size(); ++i) {
        if (!cfg.webhooks[i].secret_file.empty()) {
            readable(cfg.webhooks[i].secret_file,
                     "/notifications/webhooks/" + std::to_string(i) + "/secret_file", "secret");
        }
    }
    if (cfg.etcd) {
        for (auto [file, key] : {std::pair{&cfg.etcd->ca_file, "ca_file"},
                                 std::pair{&cfg.etcd->cert_file, "cert_file"},
                                 std::pair{&cfg.etcd->key_file, "key_file"}}) {
            if (!file->empty()) {
                readable(*file, std::string("/state/") + key, "etcd TLS");
            }
        }
    }
    for (std::size_t i = 0; i < cfg.listeners.size(); ++i) {
        if (const auto& tls = cfg.listeners[i].tls) {
            const auto at = "/listeners/" + std::to_string(i) + "/tls/";
            readable(tls->cert_file, at + "cert_file", "listener's certificate");
            readable(tls->key_file, at + "key_file", "listener's key");
        }
    }
    for (std::size_t mi = 0; mi < cfg.models.size(); ++mi) {
        for (std::size_t vi = 0; vi < cfg.models[mi].versions.size(); ++vi) {
            const auto& tls = cfg.models[mi].versions[vi].tls;
            if (!tls) {
                continue;
            }
            const auto at =
                "/models/" + std::to_string(mi) + "/versions/" + std::to_string(vi) + "/tls/";
            for (auto [file, key] : {std::pair{&tls->ca_file, "ca_file"},
                                     std::pair{&tls->cert_file, "cert_file"},
                                     std::pair{&tls->key_file, "key_file"}}) {
                if (!file->empty()) {
                    readable(*file, at + key, "backend TLS");
                }
            }
        }
    }
    return problems;
}

std::vector<problem> reload_problems(const gateway& running, const gateway& next) {
    std::vector<problem> problems;
    auto changed = [&](bool differs, const char* path, const char* what) {
        if (differs) {
            problems.push_back({path, std::string(what) + " changed: needs a restart"});
        }
    };
    auto same_tls = [](const std::optional<tls_server>& a, const std::optional<tls_server>& b) {
        return a.has_value() == b.has_value() &&
               (!a || (a->cert_file == b->cert_file && a->key_file == b->key_file));
    };
    bool listeners_same = running.listeners.size() == next.listeners.size();
    for (std::size_t i = 0; listeners_same && i < next.listeners.size(); ++i) {
        const auto& a = running.listeners[i];
        const auto& b = next.listeners[i];
        listeners_same = a.address == b.address && a.port == b.port && same_tls(a.tls, b.tls);
    }
    changed(!listeners_same, "/listeners", "listeners");
    const auto& ra = running.admin_listener;
    const auto& na = next.admin_listener;
    bool admin_same = ra.enabled == na.enabled && ra.address == na.address &&
                      ra.port == na.port && same_tls(ra.tls, na.tls) &&
                      ra.metrics_need_token == na.metrics_need_token &&
                      ra.max_body_bytes == na.max_body_bytes &&
                      ra.tokens.size() == na.tokens.size();
    for (std::size_t i = 0; admin_same && i < na.tokens.size(); ++i) {
        admin_same = ra.tokens[i].name == na.tokens[i].name &&
                     ra.tokens[i].role == na.tokens[i].role && ra.tokens[i].file == na.tokens[i].file;
    }
    changed(!admin_same, "/admin", "the admin listener");
    changed(running.state_dir != next.state_dir || running.etcd.has_value() != next.etcd.has_value() ||
                (running.etcd && (running.etcd->endpoints != next.etcd->endpoints ||
                                  running.etcd->prefix != next.etcd->prefix ||
                                  running.etcd->replica != next.etcd->replica)),
            "/state", "the state store");
    changed(running.record_metrics != next.record_metrics, "/metrics", "metrics recording");
    changed(running.workers != next.workers, "/workers", "the worker count");
    changed(running.log.level != next.log.level || running.log.access.path != next.log.access.path ||
                running.log.access.format != next.log.access.format ||
                running.log.access.sample != next.log.access.sample,
            "/logging", "logging");
    changed(running.limit.max_header_bytes != next.limit.max_header_bytes ||
                running.limit.max_request_body_bytes != next.limit.max_request_body_bytes ||
                running.limit.max_connections_per_worker !=
                    next.limit.max_connections_per_worker ||
                running.limit.max_concurrent_streams != next.limit.max_concurrent_streams,
            "/limits", "limits");
    changed(running.client.idle != next.client.idle ||
                running.client.request != next.client.request ||
                running.client.drain != next.client.drain ||
                running.client.drain_delay != next.client.drain_delay,
            "/client_timeouts", "client timeouts");
    bool hooks_same = running.webhooks.size() == next.webhooks.size();
    for (std::size_t i = 0; hooks_same && i < next.webhooks.size(); ++i) {
        const auto& a = running.webhooks[i];
        const auto& b = next.webhooks[i];
        hooks_same = a.name == b.name && a.url == b.url && a.events == b.events &&
                     a.models == b.models && a.secret_file == b.secret_file &&
                     a.timeout == b.timeout && a.max_attempts == b.max_attempts &&
                     a.backoff == b.backoff && a.queue_size == b.queue_size;
    }
    changed(!hooks_same, "/notifications", "webhooks");
    changed(running.pool.max_idle_per_endpoint != next.pool.max_idle_per_endpoint ||
                running.pool.idle_timeout != next.pool.idle_timeout ||
                running.pool.check_idle != next.pool.check_idle,
            "/upstream_pool", "the upstream pool");
    return problems;
}

result<gateway> load_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return error::make("config_unreadable", "cannot open config file " + path);
    }
    std::stringstream text;
    text << in.rdbuf();
    if (in.bad()) {
        return error::make("config_unreadable", "cannot read config file " + path);
    }
    return parse(text.str());
}

}  // namespace stagegate::config
