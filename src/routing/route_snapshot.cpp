#include "stagegate/routing/route_snapshot.hpp"
#include "stagegate/core/text.hpp"
#include "stagegate/core/tls_files.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>

namespace stagegate::routing {
namespace {

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// Builds the bands from per-version weights: candidates first, stable last.
void rebuild_bands(model_route& m) {
    m.bands.clear();
    std::uint32_t upper = 0;
    for (std::uint32_t v = 0; v < m.versions.size(); ++v) {
        if (v != m.stable && m.weights[v] > 0) {
            upper += m.weights[v];
            m.bands.push_back({upper, v});
        }
    }
    m.bands.push_back({total_weight, m.stable});
}


std::uint64_t fmix64(std::uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

// SAX handler that stops as soon as it knows the top-level "model" value.
class model_field_finder : public nlohmann::json_sax<nlohmann::json> {
public:
    std::optional<std::string> found;

    bool null() override { return value(); }
    bool boolean(bool) override { return value(); }
    bool number_integer(number_integer_t) override { return value(); }
    bool number_unsigned(number_unsigned_t) override { return value(); }
    bool number_float(number_float_t, const string_t&) override { return value(); }
    bool string(string_t& s) override {
        if (depth_ == 1 && key_is_model_) {
            found = std::move(s);
            return false;  // done: stop parsing
        }
        return value();
    }
    bool binary(binary_t&) override { return value(); }
    bool start_object(std::size_t) override {
        if (depth_ == 0 && seen_root_) {
            return false;
        }
        seen_root_ = true;
        key_is_model_ = false;
        ++depth_;
        return true;
    }
    bool key(string_t& k) override {
        key_is_model_ = depth_ == 1 && k == "model";
        return true;
    }
    bool end_object() override {
        --depth_;
        key_is_model_ = false;
        return depth_ > 0;  // the root closed without a model: stop
    }
    bool start_array(std::size_t) override {
        if (depth_ == 0) {
            return false;  // the root must be an object
        }
        ++depth_;
        key_is_model_ = false;
        return true;
    }
    bool end_array() override {
        --depth_;
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
        return false;  // never throw: an unparsable body simply has no model
    }

private:
    bool value() {
        key_is_model_ = false;
        return depth_ > 0;
    }
    int depth_ = 0;
    bool seen_root_ = false;
    bool key_is_model_ = false;
};

// The client certificate a version presents to its backends (mutual TLS). A key that does not
// match the certificate is refused here (OpenSSL checks it as it loads), so the config is
// refused rather than every handshake failing later.
void load_client_certificate(boost::asio::ssl::context& ctx, const config::upstream_tls& tls,
                             const std::string& at, std::vector<problem>& problems) {
    if (auto failed = load_certificate_and_key(ctx, tls.cert_file, tls.key_file)) {
        problems.push_back({at + (failed->key ? "key_file" : "cert_file"), failed->message});
    }
}

}  // namespace

std::uint32_t model_route::find_version(std::string_view version_name) const {
    for (std::uint32_t i = 0; i < versions.size(); ++i) {
        if (versions[i].name == version_name) {
            return i;
        }
    }
    return no_version;
}

const model_route* route_snapshot::find_model(std::string_view name) const {
    for (const auto& m : models) {
        if (m.name == name) {
            return &m;
        }
    }
    return nullptr;
}

bool safe_request_path(std::string_view target) {
    auto path = target.substr(0, target.find('?'));
    if (path.rfind("http://", 0) == 0 || path.rfind("https://", 0) == 0) {
        auto slash = path.find('/', path.find("//") + 2);
        path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
    }
    if (path.empty() || path.front() != '/') {
        return false;
    }
    for (std::size_t i = 0; i < path.size(); ++i) {
        const char c = path[i];
        if (c == '\\' || c == '\0') {
            return false;
        }
        if (c == '%' && i + 2 < path.size()) {
            const char hi = path[i + 1];
            const char lo = static_cast<char>(path[i + 2] | 0x20);  // lower case
            if ((hi == '2' && (lo == 'e' || lo == 'f')) || (hi == '5' && lo == 'c') ||
                (hi == '0' && lo == '0')) {
                return false;
            }
        }
        if (c == '/' && i + 1 < path.size() && path[i + 1] == '.') {
            // "/." or "/.." followed by '/' or the end is a dot-segment.
            std::size_t j = i + 2;
            if (j < path.size() && path[j] == '.') {
                ++j;
            }
            if (j == path.size() || path[j] == '/') {
                return false;
            }
        }
    }
    return true;
}

path_match match_path(const route_snapshot& routes, std::string_view target) {
    std::string_view path = target.substr(0, target.find('?'));
    // Custom prefixes first, longest wins; a prefix matches whole segments only.
    const model_route* best = nullptr;
    std::size_t best_len = 0;
    for (const auto& m : routes.models) {
        for (const auto& prefix : m.route.path_prefixes) {
            std::string_view p = prefix;
            bool segment_end = path.size() == p.size() || p.back() == '/' ||
                               (path.size() > p.size() && path[p.size()] == '/');
            if (p.size() > best_len && starts_with(path, p) && segment_end) {
                best = &m;
                best_len = p.size();
            }
        }
    }
    if (best) {
        return {match_outcome::model, best, best->name};
    }
    auto model_segment = [&](std::string_view rest, bool v1) -> path_match {
        std::size_t end = rest.find_first_of(v1 ? ":/" : "/");
        std::string_view name = rest.substr(0, end);
        if (name.empty()) {
            return {match_outcome::no_route, nullptr, {}};
        }
        const model_route* m = routes.find_model(name);
        if (!m || !(v1 ? m->route.kserve_v1 : m->route.kserve_v2)) {
            return {match_outcome::unknown_model, nullptr, name};
        }
        return {match_outcome::model, m, name};
    };
    if (starts_with(path, "/v1/models/")) {
        return model_segment(path.substr(11), true);
    }
    if (starts_with(path, "/v2/models/")) {
        return model_segment(path.substr(11), false);
    }
    if (path == "/v1/chat/completions" || path == "/v1/completions" || path == "/v1/embeddings" ||
        path == "/v1/responses") {
        return {match_outcome::needs_body, nullptr, {}};
    }
    if (path == "/v1/models") {
        return {match_outcome::model_list, nullptr, {}};
    }
    return {match_outcome::no_route, nullptr, {}};
}

std::optional<std::string> body_model_field(std::string_view body) {
    model_field_finder finder;
    nlohmann::json::sax_parse(body.begin(), body.end(), &finder,
                              nlohmann::json::input_format_t::json, /*strict=*/false);
    return std::move(finder.found);
}

const model_route* match_body_model(const route_snapshot& routes, std::string_view name) {
    const model_route* m = routes.find_model(name);
    return m && m->route.openai ? m : nullptr;
}

std::uint64_t sticky_hash(std::string_view key, std::uint64_t salt) {
    return fmix64(fnv1a(key) ^ salt);
}

std::uint32_t pick_version(const model_route& model, std::uint32_t point) {
    for (const auto& b : model.bands) {
        if (point < b.upper) {
            return b.version;
        }
    }
    return model.stable;
}

std::string_view find_cookie(std::string_view header, std::string_view name) {
    while (!header.empty()) {
        std::size_t end = header.find(';');
        std::string_view pair = header.substr(0, end);
        header = end == std::string_view::npos ? std::string_view{} : header.substr(end + 1);
        while (!pair.empty() && pair.front() == ' ') {
            pair.remove_prefix(1);
        }
        std::size_t eq = pair.find('=');
        if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
            std::string_view value = pair.substr(eq + 1);
            while (!value.empty() && value.back() == ' ') {
                value.remove_suffix(1);
            }
            if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
                value = value.substr(1, value.size() - 2);
            }
            return value;
        }
    }
    return {};
}

std::uint32_t endpoint_registry::id_for(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto [it, fresh] = ids_.emplace(key, static_cast<std::uint32_t>(ids_.size()));
    return it->second;
}

std::uint32_t endpoint_registry::size() const {
    std::lock_guard lock(mutex_);
    return static_cast<std::uint32_t>(ids_.size());
}

result<std::shared_ptr<const route_snapshot>> build_snapshot(const config::gateway& cfg,
                                                             endpoint_registry& registry,
                                                             const series_namer& series,
                                                             std::uint64_t generation) {
    namespace net = boost::asio;
    using tcp = net::ip::tcp;
    auto snap = std::make_shared<route_snapshot>();
    snap->generation = generation;
    snap->grpc_model_header = cfg.grpc.model_header;
    std::vector<problem> problems;
    net::io_context resolver_context;
    tcp::resolver resolver(resolver_context);

    for (std::size_t mi = 0; mi < cfg.models.size(); ++mi) {
        const auto& mc = cfg.models[mi];
        model_route m;
        m.name = mc.name;
        m.route = mc.route;
        m.stage = mc.split.stage;
        m.sticky_header = mc.split.sticky_key.header;
        m.sticky_cookie = mc.split.sticky_key.cookie;
        m.allow_force_version = mc.split.allow_force_version;
        m.hash_salt = fmix64(fnv1a(mc.name));
        m.timeouts = mc.timeouts;
        m.health = mc.health;
        if (mc.prediction) {
            m.prediction = std::make_shared<const predictions::spec>(
                predictions::compile(*mc.prediction));
        }
        for (std::size_t vi = 0; vi < mc.versions.size(); ++vi) {
            const auto& vc = mc.versions[vi];
            version_route v;
            v.name = vc.name;
            v.series = series(mc.name, vc.name, m.stage);
            v.http2 = vc.protocol != config::upstream_protocol::http1;
            if (vc.tls) {
                boost::system::error_code ec;
                auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
                ctx->set_options(net::ssl::context::no_sslv2 | net::ssl::context::no_sslv3 |
                                 net::ssl::context::no_tlsv1 | net::ssl::context::no_tlsv1_1);
                if (vc.tls->ca_file.empty()) {
                    ctx->set_default_verify_paths(ec);
                } else {
                    ctx->load_verify_file(vc.tls->ca_file, ec);
                }
                if (ec) {
                    problems.push_back({"/models/" + std::to_string(mi) + "/versions/" +
                                            std::to_string(vi) + "/tls/ca_file",
                                        "cannot load CA certificates: " + ec.message()});
                }
                ctx->set_verify_mode(vc.tls->verify ? net::ssl::verify_peer : net::ssl::verify_none);
                if (!vc.tls->cert_file.empty()) {
                    load_client_certificate(*ctx, *vc.tls,
                                            "/models/" + std::to_string(mi) + "/versions/" +
                                                std::to_string(vi) + "/tls/",
                                            problems);
                }
                if (vc.protocol == config::upstream_protocol::h2) {
                    // ALPN offers only "h2": a backend that cannot speak it over TLS selects
                    // nothing, and the pool refuses the connection (upstream_pool.cpp).
                    static constexpr unsigned char h2_only[] = {2, 'h', '2'};
                    SSL_CTX_set_alpn_protos(ctx->native_handle(), h2_only, sizeof h2_only);
                }
                v.tls = std::move(ctx);
                v.tls_verify = vc.tls->verify;
                v.tls_server_name = vc.tls->server_name;
            }
            for (std::size_t ei = 0; ei < vc.endpoints.size(); ++ei) {
                const auto& ec_cfg = vc.endpoints[ei];
                upstream_endpoint ep;
                ep.host = ec_cfg.host;
                ep.port = ec_cfg.port;
                ep.authority = ec_cfg.host + ":" + std::to_string(ec_cfg.port);
                boost::system::error_code ec;
                auto results = resolver.resolve(ec_cfg.host, std::to_string(ec_cfg.port),
                                                tcp::resolver::numeric_service, ec);
                if (ec || results.empty()) {
                    problems.push_back({"/models/" + std::to_string(mi) + "/versions/" +
                                            std::to_string(vi) + "/endpoints/" +
                                            std::to_string(ei),
                                        "cannot resolve " + ep.authority + ": " +
                                            (ec ? ec.message() : "no address")});
                    continue;
                }
                ep.address = results.begin()->endpoint();
                // One id per transport and TLS identity: pools index by it, so an
                // HTTP/1.1-over-TLS version's idle connections never serve an "h2" version of
                // the same host:port, nor a connection made with one version's client
                // certificate (or trust settings) a version configured with another.
                const char* transport =
                    v.tls ? (v.http2 ? "|h2" : "|tls") : (v.http2 ? "|h2c" : "|tcp");
                auto key = ep.authority + transport;
                if (vc.tls) {
                    key += "|" + std::to_string(vc.tls->verify) + "|" + vc.tls->ca_file + "|" +
                           vc.tls->server_name + "|" + vc.tls->cert_file + "|" +
                           vc.tls->key_file;
                }
                ep.id = registry.id_for(key);
                if (v.tls && v.tls_server_name.empty()) {
                    v.tls_server_name = ep.host;
                }
                v.endpoints.push_back(std::move(ep));
            }
            m.versions.push_back(std::move(v));
        }
        m.stable = m.find_version(mc.stable);
        m.weights.assign(m.versions.size(), 0);
        for (const auto& [name, bp] : mc.split.weights) {
            auto idx = m.find_version(name);
            if (idx != no_version) {
                m.weights[idx] = bp;
            }
        }
        if (m.stable == no_version) {
            problems.push_back({"/models/" + std::to_string(mi) + "/stable", "unknown version"});
            continue;
        }
        rebuild_bands(m);
        snap->models.push_back(std::move(m));
    }
    if (!problems.empty()) {
        return error{"invalid_config", "cannot build routes", std::move(problems)};
    }
    snap->endpoint_count = registry.size();
    // OpenAI's model object: id, object, created (seconds; here when these routes were
    // built), owned_by.
    nlohmann::json listed = nlohmann::json::array();
    const auto created = static_cast<std::int64_t>(std::time(nullptr));
    for (const auto& m : snap->models) {
        if (m.route.openai) {
            listed.push_back(
                {{"id", m.name}, {"object", "model"}, {"created", created}, {"owned_by", "stagegate"}});
        }
    }
    snap->openai_model_list = nlohmann::json{{"object", "list"}, {"data", std::move(listed)}}.dump();
    snap->openai_model_list += '\n';
    return std::shared_ptr<const route_snapshot>(std::move(snap));
}

result<std::shared_ptr<const route_snapshot>> with_traffic(
    const route_snapshot& base, std::string_view model,
    const std::map<std::string, std::uint32_t>& weights, std::string stage,
    const series_namer& series, std::string_view stable, std::string_view watched,
    std::uint32_t trip_after, mirror_plan mirror) {
    auto snap = std::make_shared<route_snapshot>(base);
    snap->generation = base.generation + 1;
    model_route* target = nullptr;
    for (auto& m : snap->models) {
        if (m.name == model) {
            target = &m;
        }
    }
    if (!target) {
        return error::make("unknown_model", "no model named \"" + std::string(model) + "\"");
    }
    if (!stable.empty()) {
        auto idx = target->find_version(stable);
        if (idx == no_version) {
            return error::make("unknown_version", "model " + target->name + " has no version \"" +
                                                      std::string(stable) + "\"");
        }
        target->stable = idx;
    }
    std::vector<std::uint32_t> next(target->versions.size(), 0);
    std::uint64_t sum = 0;
    std::vector<problem> problems;
    for (const auto& [name, bp] : weights) {
        auto idx = target->find_version(name);
        if (idx == no_version) {
            problems.push_back({"/weights/" + name, "names no version of model " + target->name});
            continue;
        }
        if (bp > total_weight) {
            problems.push_back({"/weights/" + name, "must be at most 10000 basis points"});
            continue;
        }
        next[idx] = bp;
        sum += bp;
    }
    if (problems.empty() && sum != total_weight) {
        problems.push_back(
            {"/weights", "must sum to 10000 basis points, got " + std::to_string(sum)});
    }
    if (!problems.empty()) {
        return error{"invalid_weights", "weights rejected", std::move(problems)};
    }
    target->weights = std::move(next);
    target->stage = std::move(stage);
    for (auto& v : target->versions) {
        v.series = series(target->name, v.name, target->stage);
        v.trip_after = !watched.empty() && v.name == watched ? trip_after : 0;
    }
    target->mirror_bp = 0;
    target->mirror_version = no_version;
    if (mirror.bp > 0 && !watched.empty()) {
        auto idx = target->find_version(watched);
        if (idx == no_version || idx == target->stable) {
            return error::make("invalid_mirror", "model " + target->name +
                                                     " cannot mirror to \"" +
                                                     std::string(watched) + "\"");
        }
        target->mirror_bp = std::min(mirror.bp, total_weight);
        target->mirror_version = idx;
        target->mirror_series = series(target->name, watched, config::mirror_stage(target->stage));
        target->mirror_max_in_flight = mirror.max_in_flight;
        target->mirror_queue = mirror.queue;
    }
    rebuild_bands(*target);
    return std::shared_ptr<const route_snapshot>(std::move(snap));
}

}  // namespace stagegate::routing
