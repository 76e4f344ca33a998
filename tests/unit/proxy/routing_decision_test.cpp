// Routing decisions of the proxy, without sockets: route_request and check_head on requests
// built in memory, against snapshots built from config.
#include "proxy/routing_decision.hpp"

#include "requests.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <map>
#include <string>
#include <vector>

namespace stagegate::proxy {
namespace {

std::uint32_t test_series(std::string_view model, std::string_view version,
                          std::string_view stage) {
    static std::vector<std::string> seen;
    std::string key = std::string(model) + "/" + std::string(version) + "/" + std::string(stage);
    for (std::uint32_t i = 0; i < seen.size(); ++i) {
        if (seen[i] == key) {
            return i;
        }
    }
    seen.push_back(key);
    return static_cast<std::uint32_t>(seen.size() - 1);
}

// Model "m" (v1 stable, v2) with the given weights, sticky by header X-User or cookie uid.
// `grpc_model_header`: the "grpc": {"model_header"} setting.
std::shared_ptr<const routing::route_snapshot> snapshot(std::uint32_t v2_bp,
                                                        bool allow_force = true,
                                                        std::string grpc_model_header = {}) {
    auto cfg = config::parse(R"({
      "listeners": [{"port": 0}],
      "models": [
        {"name": "m", "stable": "v1",
         "versions": [{"name": "v1", "endpoints": ["127.0.0.1:9001"]},
                      {"name": "v2", "endpoints": ["127.0.0.1:9002"]}],
         "traffic": {"weights": {"v1": 10000, "v2": 0}, "stage": "canary",
                     "sticky": {"header": "X-User", "cookie": "uid"}}}
      ]
    })");
    EXPECT_TRUE(cfg) << cfg.error().describe();
    cfg->models[0].split.weights = {{"v1", 10000 - v2_bp}, {"v2", v2_bp}};
    cfg->models[0].split.allow_force_version = allow_force;
    cfg->grpc.model_header = std::move(grpc_model_header);
    routing::endpoint_registry registry;
    auto snap = routing::build_snapshot(*cfg, registry, test_series);
    EXPECT_TRUE(snap) << snap.error().describe();
    return *snap;
}

class RoutingDecision : public ::testing::Test {
protected:
    boost::asio::io_context io;
    worker w{io, settings{}, 0};

    std::string version_of(const routing::route_snapshot& routes, const client_request& req) {
        auto d = route_request(w, routes, req);
        EXPECT_FALSE(d.problem) << d.problem->message;
        return d.problem ? std::string() : d.model->versions[d.version].name;
    }
    // How many of `n` requests without a sticky key go to v2.
    int random_to_v2(const routing::route_snapshot& routes, int n) {
        int v2 = 0;
        for (int i = 0; i < n; ++i) {
            v2 += version_of(routes, post_request("/v1/models/m:predict")) == "v2" ? 1 : 0;
        }
        return v2;
    }
};

TEST_F(RoutingDecision, WeightsDecideTheShareOfRandomTraffic) {
    EXPECT_EQ(random_to_v2(*snapshot(0), 1000), 0);
    EXPECT_EQ(random_to_v2(*snapshot(10000), 1000), 1000);
    // 50%: 4000 draws put 2000 +- 32 (one standard deviation) on v2; the bounds are 12 of them.
    const int half = random_to_v2(*snapshot(5000), 4000);
    EXPECT_GT(half, 1600);
    EXPECT_LT(half, 2400);
}

TEST_F(RoutingDecision, StickyHeaderKeepsAUserOnOneVersionAndBucket) {
    auto routes = snapshot(5000);
    const auto& m = routes->models[0];
    std::map<std::string, int> versions_seen;
    for (int user = 0; user < 200; ++user) {
        auto req = post_request("/v1/models/m:predict");
        req.set("X-User", "user-" + std::to_string(user));
        auto first = route_request(w, *routes, req);
        ASSERT_FALSE(first.problem);
        const auto hash = routing::sticky_hash("user-" + std::to_string(user), m.hash_salt);
        EXPECT_EQ(first.version, routing::pick_version(m, routing::point_from_u64(hash)));
        EXPECT_EQ(first.unit, static_cast<std::uint32_t>(hash));
        for (int again = 0; again < 5; ++again) {
            auto next = route_request(w, *routes, req);
            EXPECT_EQ(next.version, first.version);
            EXPECT_EQ(next.unit, first.unit);
        }
        ++versions_seen[m.versions[first.version].name];
    }
    EXPECT_GT(versions_seen["v1"], 50);  // users spread over both versions
    EXPECT_GT(versions_seen["v2"], 50);
}

TEST_F(RoutingDecision, StickyCookieWhenNoHeaderAndHeaderFirst) {
    auto routes = snapshot(5000);
    const auto& m = routes->models[0];
    auto by_cookie = post_request("/v1/models/m:predict");
    by_cookie.set(http::field::cookie, "theme=dark; uid=alice");
    EXPECT_EQ(sticky_key(m, by_cookie), "alice");
    // A second Cookie header line is looked at too.
    auto second_line = post_request("/v1/models/m:predict");
    second_line.insert(http::field::cookie, "theme=dark");
    second_line.insert(http::field::cookie, "uid=bob");
    EXPECT_EQ(sticky_key(m, second_line), "bob");
    auto both = by_cookie;
    both.set("X-User", "carol");
    EXPECT_EQ(sticky_key(m, both), "carol");
    EXPECT_EQ(sticky_key(m, post_request("/v1/models/m:predict")), "");

    const auto expected = routing::pick_version(
        m, routing::point_from_u64(routing::sticky_hash("alice", m.hash_salt)));
    for (int i = 0; i < 20; ++i) {
        EXPECT_EQ(route_request(w, *routes, by_cookie).version, expected);
    }
}

TEST_F(RoutingDecision, ForcedVersionWinsOverWeightsWhenAllowed) {
    auto forced = post_request("/v1/models/m:predict");
    forced.set(force_version_header, "v2");
    auto routes = snapshot(0);
    for (int i = 0; i < 20; ++i) {
        EXPECT_EQ(version_of(*routes, forced), "v2");
    }
    auto not_allowed = snapshot(0, false);
    EXPECT_EQ(version_of(*not_allowed, forced), "v1");

    forced.set(force_version_header, "v9");
    auto d = route_request(w, *routes, forced);
    ASSERT_TRUE(d.problem);
    EXPECT_EQ(d.problem->status, http::status::bad_request);
    EXPECT_EQ(d.problem->code, "unknown_version");
    EXPECT_EQ(d.problem->message, "model m has no version \"v9\"");
}

TEST_F(RoutingDecision, TrippedCandidateGetsNoRandomOrStickyTraffic) {
    auto routes = snapshot(10000);
    const auto& m = routes->models[0];
    w.trip(m.versions[1].series);
    EXPECT_EQ(random_to_v2(*routes, 200), 0);
    auto sticky = post_request("/v1/models/m:predict");
    sticky.set("X-User", "u");
    EXPECT_EQ(version_of(*routes, sticky), "v1");
    auto forced = post_request("/v1/models/m:predict");
    forced.set(force_version_header, "v2");
    EXPECT_EQ(version_of(*routes, forced), "v2");  // asked for by name: still served
}

TEST_F(RoutingDecision, UnroutableRequestsSayWhy) {
    auto routes = snapshot(0);
    struct case_t {
        std::string target;
        std::string body;
        http::status status;
        std::string_view code;
        metrics::unrouted_reason reason;
        std::string message;
    };
    const std::vector<case_t> cases = {
        {"/v1/models/zzz:predict", "", http::status::not_found, "unknown_model",
         metrics::unrouted_reason::unknown_model, "no model named \"zzz\" is served here"},
        {"/healthz", "", http::status::not_found, "no_route", metrics::unrouted_reason::no_route,
         "no model route matches /healthz"},
        {"/v1/models/../m:predict", "", http::status::bad_request, "bad_path",
         metrics::unrouted_reason::bad_request,
         "the path has dot-segments or encoded separators: send it normalized"},
        {"/v1/models/m%2Fx:predict", "", http::status::bad_request, "bad_path",
         metrics::unrouted_reason::bad_request,
         "the path has dot-segments or encoded separators: send it normalized"},
        {"/v1/chat/completions", R"({"messages":[]})", http::status::bad_request,
         "missing_model", metrics::unrouted_reason::bad_request,
         "the JSON body needs a string field \"model\""},
        {"/v1/chat/completions", R"({"model":"nope"})", http::status::not_found,
         "unknown_model", metrics::unrouted_reason::unknown_model,
         "no model named \"nope\" is served here"},
    };
    for (const auto& c : cases) {
        auto d = route_request(w, *routes, post_request(c.target, c.body));
        ASSERT_TRUE(d.problem) << c.target;
        EXPECT_EQ(d.problem->status, c.status) << c.target;
        EXPECT_EQ(d.problem->code, c.code) << c.target;
        EXPECT_EQ(d.problem->message, c.message) << c.target;
        EXPECT_EQ(d.unrouted, c.reason) << c.target;
    }
    // OpenAI's model list is answered by the gateway itself, for GET (and HEAD) only.
    client_request list{http::verb::get, "/v1/models", 11};
    auto listed = route_request(w, *routes, list);
    ASSERT_FALSE(listed.problem);
    ASSERT_NE(listed.local_answer, nullptr);
    EXPECT_EQ(listed.local_answer, &routes->openai_model_list);
    auto posted = route_request(w, *routes, post_request("/v1/models", "{}"));
    ASSERT_TRUE(posted.problem);
    EXPECT_EQ(posted.problem->status, http::status::method_not_allowed);
    EXPECT_EQ(posted.local_answer, nullptr);
    // The OpenAI body names a model we serve: routed like the path form.
    auto d = route_request(w, *routes, post_request("/v1/chat/completions", R"({"model":"m"})"));
    ASSERT_FALSE(d.problem);
    EXPECT_EQ(d.model->name, "m");
}

TEST_F(RoutingDecision, GrpcCallOfAnotherServiceIsRoutedByTheConfiguredMetadata) {
    auto call = [](std::string_view model) {
        auto req = post_request("/my.pkg.Echo/Say", std::string("\0\0\0\0\0", 5));
        req.set(http::field::content_type, "application/grpc");
        if (!model.empty()) {
            req.set("x-model-name", model);
        }
        return req;
    };
    auto routes = snapshot(10000, true, "x-model-name");
    auto d = route_request(w, *routes, call("m"));
    ASSERT_FALSE(d.problem) << d.problem->message;
    EXPECT_EQ(d.model->name, "m");
    EXPECT_EQ(d.model->versions[d.version].name, "v2");  // then split by the weights as usual
    auto forced = call("m");
    forced.set(force_version_header, "v1");
    EXPECT_EQ(version_of(*routes, forced), "v1");

    // Without the metadata: no route (UNIMPLEMENTED), and the answer says what would route it.
    auto unnamed = route_request(w, *routes, call(""));
    ASSERT_TRUE(unnamed.problem);
    EXPECT_EQ(unnamed.problem->code, "no_route");
    EXPECT_EQ(unnamed.problem->message, "the gateway does not read the messages of "
                                        "/my.pkg.Echo/Say: name the call's model in its "
                                        "\"x-model-name\" metadata");
    EXPECT_EQ(unnamed.unrouted, metrics::unrouted_reason::no_route);
    auto unknown = route_request(w, *routes, call("zzz"));
    ASSERT_TRUE(unknown.problem);
    EXPECT_EQ(unknown.problem->code, "unknown_model");  // NOT_FOUND
    EXPECT_EQ(unknown.problem->message,
              "no model named \"zzz\" (metadata \"x-model-name\") is served here");

    // Only gRPC calls are routed by it, and only when it is configured.
    auto not_grpc = post_request("/my.pkg.Echo/Say");
    not_grpc.set("x-model-name", "m");
    auto plain = route_request(w, *routes, not_grpc);
    ASSERT_TRUE(plain.problem);
    EXPECT_EQ(plain.problem->message, "no model route matches /my.pkg.Echo/Say");
    auto off = route_request(w, *snapshot(10000), call("m"));
    ASSERT_TRUE(off.problem);
    EXPECT_EQ(off.problem->message, "no model route matches /my.pkg.Echo/Say");
}

TEST(CheckHead, OnlyChunkedTransferEncodingPasses) {
    auto req = post_request("/v1/models/m:predict");
    EXPECT_FALSE(check_head(req));
    req.set(http::field::transfer_encoding, "Chunked");
    EXPECT_FALSE(check_head(req));
    for (const char* te : {"gzip, chunked", "identity", "chunked, gzip"}) {
        req.set(http::field::transfer_encoding, te);
        auto problem = check_head(req);
        ASSERT_TRUE(problem) << te;
        EXPECT_EQ(problem->status, http::status::not_implemented);
        EXPECT_EQ(problem->code, "unsupported_transfer_encoding");
    }
}

TEST(CheckHead, HostIsRequiredOnceAndMustBeAHost) {
    // As nginx: 400 for an HTTP/1.1 request without Host, with two, or with a malformed one.
    auto req = post_request("/v1/models/m:predict");
    for (const char* good : {"gw", "gw:8080", "10.0.0.1:80", "[::1]:8080", "[fe80::1]", "",
                             "my-model.svc.cluster.local", "a-b_c.d~e%41!$&'()*+,;=:80"}) {
        req.set(http::field::host, good);
        EXPECT_FALSE(check_head(req)) << good;
    }
    for (const char* bad : {"a b", "gw:80:80", "gw/x", "gw:port", "[::1", "gw@evil", "gw:1234567",
                            "gw\xc3\xa9", "gw\x7f", "gw\"x"}) {
        req.set(http::field::host, bad);
        auto problem = check_head(req);
        ASSERT_TRUE(problem) << bad;
        EXPECT_EQ(problem->code, "bad_host") << bad;
    }
    req.set(http::field::host, "gw");
    req.insert(http::field::host, "gw");
    ASSERT_TRUE(check_head(req));
    EXPECT_EQ(check_head(req)->code, "bad_host");
    req.erase(http::field::host);
    ASSERT_TRUE(check_head(req));
    EXPECT_EQ(check_head(req)->code, "missing_host");
    req.version(10);  // HTTP/1.0 has no Host requirement
    EXPECT_FALSE(check_head(req));
}

TEST(CheckHead, ContentLengthRepeatedIsRefusedEvenWhenEqual) {
    auto req = post_request("/v1/models/m:predict", "abc");
    req.set(http::field::content_length, "3");
    EXPECT_FALSE(check_head(req));
    req.insert(http::field::content_length, "3");
    auto problem = check_head(req);
    ASSERT_TRUE(problem);
    EXPECT_EQ(problem->status, http::status::bad_request);
    EXPECT_EQ(problem->code, "invalid_content_length");
}

}  // namespace
}  // namespace stagegate::proxy
