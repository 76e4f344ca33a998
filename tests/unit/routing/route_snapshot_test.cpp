#include "stagegate/routing/route_snapshot.hpp"
#include "support/test_client.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

namespace stagegate::routing {
namespace {

config::gateway two_version_config(std::uint32_t candidate_bp) {
    auto cfg = config::parse(R"({
      "listeners": [{"port": 0}],
      "models": [
        {"name": "m", "stable": "v1",
         "versions": [{"name": "v1", "endpoints": ["127.0.0.1:9001"]},
                      {"name": "v2", "endpoints": ["127.0.0.1:9002", "127.0.0.1:9003"]}],
         "traffic": {"weights": {"v1": 10000, "v2": 0}, "sticky": {"header": "X-User"}}},
        {"name": "other", "stable": "a", "versions": [{"name": "a", "endpoints": ["127.0.0.1:9004"]}],
         "match": {"kserve_v1": false, "openai": false, "path_prefixes": ["/custom/other"]}}
      ]
    })");
    EXPECT_TRUE(cfg) << cfg.error().describe();
    cfg->models[0].split.weights = {{"v1", 10000 - candidate_bp}, {"v2", candidate_bp}};
    return *cfg;
}

// Series ids for tests: a fixed registry of label triples.
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

std::shared_ptr<const route_snapshot> build(std::uint32_t candidate_bp) {
    endpoint_registry registry;
    auto snap = build_snapshot(two_version_config(candidate_bp), registry, test_series);
    EXPECT_TRUE(snap) << snap.error().describe();
    return *snap;
}

std::uint64_t splitmix(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

TEST(MatchPath, KServeV1AndV2) {
    auto snap = build(0);
    auto v1 = match_path(*snap, "/v1/models/m:predict");
    EXPECT_EQ(v1.outcome, match_outcome::model);
    EXPECT_EQ(v1.model->name, "m");
    EXPECT_EQ(match_path(*snap, "/v1/models/m/versions/3:predict").model->name, "m");
    EXPECT_EQ(match_path(*snap, "/v2/models/m/infer").model->name, "m");
    EXPECT_EQ(match_path(*snap, "/v2/models/m/infer?x=1").model->name, "m");
    auto unknown = match_path(*snap, "/v1/models/zzz:predict");
    EXPECT_EQ(unknown.outcome, match_outcome::unknown_model);
    EXPECT_EQ(unknown.name, "zzz");
    EXPECT_EQ(match_path(*snap, "/healthz").outcome, match_outcome::no_route);
    EXPECT_EQ(match_path(*snap, "/v1/models/").outcome, match_outcome::no_route);
}

TEST(MatchPath, DisabledProtocolIsUnknownAndPrefixesMatchWholeSegments) {
    auto snap = build(0);
    EXPECT_EQ(match_path(*snap, "/v1/models/other:predict").outcome,
              match_outcome::unknown_model);
    EXPECT_EQ(match_path(*snap, "/v2/models/other/infer").model->name, "other");
    EXPECT_EQ(match_path(*snap, "/custom/other").model->name, "other");
    EXPECT_EQ(match_path(*snap, "/custom/other/predict").model->name, "other");
    EXPECT_EQ(match_path(*snap, "/custom/otherwise").outcome, match_outcome::no_route);
}

TEST(MatchPath, OpenAiPathsNeedTheBody) {
    auto snap = build(0);
    EXPECT_EQ(match_path(*snap, "/v1/chat/completions").outcome, match_outcome::needs_body);
    EXPECT_EQ(match_path(*snap, "/v1/completions").outcome, match_outcome::needs_body);
    EXPECT_EQ(match_body_model(*snap, "m")->name, "m");
    EXPECT_EQ(match_body_model(*snap, "other"), nullptr);  // openai disabled for it
}

// OpenAI's GET /v1/models (what the SDK's models.list(), LiteLLM and Open WebUI call): the
// models matched by their OpenAI "model" field, in OpenAI's list format, built once per
// snapshot; /v1/models/{name} stays KServe v1's.
TEST(MatchPath, OpenAiModelListIsTheModelsWithOpenAiMatching) {
    auto snap = build(0);
    EXPECT_EQ(match_path(*snap, "/v1/models").outcome, match_outcome::model_list);
    EXPECT_EQ(match_path(*snap, "/v1/models?limit=5").outcome, match_outcome::model_list);
    EXPECT_EQ(match_path(*snap, "/v1/models/m").outcome, match_outcome::model);
    EXPECT_EQ(match_path(*snap, "/v1/responses").outcome, match_outcome::needs_body);
    auto list = nlohmann::json::parse(snap->openai_model_list);
    EXPECT_EQ(list["object"], "list");
    ASSERT_EQ(list["data"].size(), 1u);  // "other" does not match OpenAI requests
    EXPECT_EQ(list["data"][0]["id"], "m");
    EXPECT_EQ(list["data"][0]["object"], "model");
    EXPECT_EQ(list["data"][0]["owned_by"], "stagegate");
    EXPECT_GT(list["data"][0]["created"].get<std::int64_t>(), 1'700'000'000);
}

TEST(BodyModelField, FindsTopLevelModelOnly) {
    EXPECT_EQ(body_model_field(R"({"model":"m","messages":[]})"), "m");
    EXPECT_EQ(body_model_field(R"({"messages":[{"model":"inner"}],"model":"outer"})"), "outer");
    EXPECT_EQ(body_model_field(R"({"opts":{"model":"inner"}})"), std::nullopt);
    EXPECT_EQ(body_model_field(R"({"model":5})"), std::nullopt);
    EXPECT_EQ(body_model_field(R"(["model","m"])"), std::nullopt);
    EXPECT_EQ(body_model_field("not json"), std::nullopt);
    EXPECT_EQ(body_model_field(""), std::nullopt);
    EXPECT_EQ(body_model_field(R"({"model":"m")"), "m");  // found before the truncation
    EXPECT_EQ(body_model_field(std::string("{\"model\":\"\xff\"}")), std::nullopt);
}

TEST(PickVersion, ZeroWeightNeverPickedFullWeightAlways) {
    auto none = build(0);
    auto all = build(10000);
    const auto& m0 = none->models[0];
    const auto& m1 = all->models[0];
    for (std::uint32_t p = 0; p < total_weight; ++p) {
        ASSERT_EQ(pick_version(m0, p), m0.stable);
        ASSERT_EQ(m1.versions[pick_version(m1, p)].name, "v2");
    }
}

TEST(PickVersion, BandsAreExactBasisPoints) {
    auto snap = build(500);
    const auto& m = snap->models[0];
    std::uint32_t candidate = 0;
    for (std::uint32_t p = 0; p < total_weight; ++p) {
        candidate += m.versions[pick_version(m, p)].name == "v2";
    }
    EXPECT_EQ(candidate, 500u);
}

TEST(PickVersion, RandomPointsSplitWithinBinomialInterval) {
    // 200,000 draws at 5 %: mean 10,000, sd 97.5. +-5.3 sd (two-sided p < 1e-7) = +-517.
    auto snap = build(500);
    const auto& m = snap->models[0];
    std::uint64_t state = 42;
    int candidate = 0;
    for (int i = 0; i < 200000; ++i) {
        candidate += pick_version(m, point_from_u64(splitmix(state))) != m.stable;
    }
    EXPECT_NEAR(candidate, 10000, 517);
}

TEST(StickyHash, MonotoneWideningKeepsCandidateUsers) {
    auto at5 = build(500);
    auto at25 = build(2500);
    const auto& m5 = at5->models[0];
    const auto& m25 = at25->models[0];
    ASSERT_EQ(m5.hash_salt, m25.hash_salt);
    int on5 = 0;
    int on25 = 0;
    for (int user = 0; user < 20000; ++user) {
        std::string key = "user-" + std::to_string(user);
        auto point = point_from_u64(sticky_hash(key, m5.hash_salt));
        bool c5 = pick_version(m5, point) != m5.stable;
        bool c25 = pick_version(m25, point) != m25.stable;
        on5 += c5;
        on25 += c25;
        ASSERT_TRUE(!c5 || c25) << key << " left the candidate when it widened";
    }
    // Hash quality: 20,000 keys, sd at 5 % = 30.8 and at 25 % = 61.2; +-5.3 sd bounds.
    EXPECT_NEAR(on5, 1000, 164);
    EXPECT_NEAR(on25, 5000, 325);
}

TEST(StickyHash, DifferentModelsGetDifferentSalts) {
    auto snap = build(0);
    EXPECT_NE(snap->models[0].hash_salt, snap->models[1].hash_salt);
    EXPECT_NE(sticky_hash("u", 1), sticky_hash("u", 2));
    EXPECT_EQ(sticky_hash("u", 1), sticky_hash("u", 1));
}

TEST(WithTraffic, ReplacesWeightsAndBumpsGeneration) {
    auto snap = build(0);
    auto next = with_traffic(*snap, "m", {{"v1", 7500}, {"v2", 2500}}, "canary-25", test_series);
    ASSERT_TRUE(next) << next.error().describe();
    EXPECT_EQ((*next)->generation, snap->generation + 1);
    EXPECT_EQ((*next)->models[0].stage, "canary-25");
    EXPECT_EQ((*next)->models[0].weights[1], 2500u);
    EXPECT_EQ(snap->models[0].weights[1], 0u);  // the old snapshot is untouched
    // Endpoint ids (pool keys) carry over.
    EXPECT_EQ((*next)->models[0].versions[1].endpoints[1].id,
              snap->models[0].versions[1].endpoints[1].id);
    // A new stage label is a new metrics series; the other model keeps its own.
    EXPECT_NE((*next)->models[0].versions[1].series, snap->models[0].versions[1].series);
    EXPECT_EQ((*next)->models[1].versions[0].series, snap->models[1].versions[0].series);
    // Only the rollout's candidate is watched for a failure streak.
    EXPECT_EQ((*next)->models[0].versions[1].trip_after, 0u);
    auto watched = with_traffic(*snap, "m", {{"v1", 9000}, {"v2", 1000}}, "canary-10",
                                test_series, "", "v2", 20);
    ASSERT_TRUE(watched);
    EXPECT_EQ((*watched)->models[0].versions[1].trip_after, 20u);
    EXPECT_EQ((*watched)->models[0].versions[0].trip_after, 0u);
}

TEST(WithTraffic, RejectsBadWeights) {
    auto snap = build(0);
    auto bad_sum = with_traffic(*snap, "m", {{"v1", 7000}, {"v2", 2500}}, "s", test_series);
    ASSERT_FALSE(bad_sum);
    EXPECT_EQ(bad_sum.error().code, "invalid_weights");
    EXPECT_FALSE(with_traffic(*snap, "m", {{"v1", 5000}, {"v9", 5000}}, "s", test_series));
    EXPECT_FALSE(with_traffic(*snap, "m", {{"v1", 20000}}, "s", test_series));
    auto unknown = with_traffic(*snap, "nope", {{"v1", 10000}}, "s", test_series);
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, "unknown_model");
}

TEST(BuildSnapshot, EndpointIdsAreStableAcrossBuilds) {
    endpoint_registry registry;
    auto a = build_snapshot(two_version_config(0), registry, test_series);
    auto b = build_snapshot(two_version_config(500), registry, test_series);
    ASSERT_TRUE(a && b);
    EXPECT_EQ((*a)->models[0].versions[0].endpoints[0].id,
              (*b)->models[0].versions[0].endpoints[0].id);
    EXPECT_EQ((*b)->endpoint_count, 4u);
}

TEST(BuildSnapshot, VersionsOfOneHostWithDifferentClientCertificatesShareNoConnection) {
    // Pools index connections by endpoint id: a connection made with v1's client certificate
    // must never carry v2's calls to the same host:port.
    const auto a = test::make_test_certificate();
    const auto b = test::make_test_certificate();
    auto cfg = two_version_config(0);
    cfg.models[0].versions[1].endpoints = cfg.models[0].versions[0].endpoints;
    for (auto& v : cfg.models[0].versions) {
        v.tls = config::upstream_tls{.ca_file = a.cert_file};
    }
    endpoint_registry registry;
    auto same = build_snapshot(cfg, registry, test_series);
    ASSERT_TRUE(same);
    EXPECT_EQ((*same)->models[0].versions[0].endpoints[0].id,
              (*same)->models[0].versions[1].endpoints[0].id);
    cfg.models[0].versions[0].tls->cert_file = a.cert_file;
    cfg.models[0].versions[0].tls->key_file = a.key_file;
    cfg.models[0].versions[1].tls->cert_file = b.cert_file;
    cfg.models[0].versions[1].tls->key_file = b.key_file;
    auto apart = build_snapshot(cfg, registry, test_series);
    ASSERT_TRUE(apart);
    EXPECT_NE((*apart)->models[0].versions[0].endpoints[0].id,
              (*apart)->models[0].versions[1].endpoints[0].id);
}

TEST(BuildSnapshot, UnresolvableHostIsAProblemWithItsPath) {
    auto cfg = two_version_config(0);
    cfg.models[0].versions[0].endpoints[0].host = "no-such-host.invalid";
    endpoint_registry registry;
    auto snap = build_snapshot(cfg, registry, test_series);
    ASSERT_FALSE(snap);
    ASSERT_FALSE(snap.error().problems.empty());
    EXPECT_EQ(snap.error().problems[0].path, "/models/0/versions/0/endpoints/0");
}

TEST(BuildSnapshot, AClientCertificateThatCannotBeUsedIsAProblemWithItsPath) {
    const auto a = test::make_test_certificate();
    const auto b = test::make_test_certificate();
    auto with_client = [&](const std::string& cert, const std::string& key) {
        auto cfg = two_version_config(0);
        cfg.models[0].versions[1].tls =
            config::upstream_tls{.ca_file = a.cert_file, .cert_file = cert, .key_file = key};
        endpoint_registry registry;
        return build_snapshot(cfg, registry, test_series);
    };
    ASSERT_TRUE(with_client(a.cert_file, a.key_file));
    auto missing = with_client(a.dir + "/none.pem", a.key_file);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().problems[0].path, "/models/0/versions/1/tls/cert_file");
    // Another certificate's key: refused when the config loads, not at every handshake.
    auto mismatched = with_client(a.cert_file, b.key_file);
    ASSERT_FALSE(mismatched);
    EXPECT_EQ(mismatched.error().problems[0].path, "/models/0/versions/1/tls/key_file");
    EXPECT_NE(mismatched.error().problems[0].message.find("mismatch"), std::string::npos)
        << mismatched.error().problems[0].message;
}

TEST(FindCookie, ParsesPairs) {
    EXPECT_EQ(find_cookie("a=1; user=abc; b=2", "user"), "abc");
    EXPECT_EQ(find_cookie("user=\"q\"", "user"), "q");
    EXPECT_EQ(find_cookie("xuser=1", "user"), "");
    EXPECT_EQ(find_cookie("", "user"), "");
}

}  // namespace
}  // namespace stagegate::routing

namespace stagegate::routing {
namespace {

TEST(SafePath, DotSegmentsAndEncodedSeparatorsAreRefused) {
    for (const char* ok : {"/v1/models/m:predict", "/v2/models/m/infer?x=../y", "/",
                           "/v1/models/m.v2:predict", "/a/.well-known/x", "/a/..b/c",
                           "http://host/v1/models/m:predict", "/a%20b"}) {
        EXPECT_TRUE(safe_request_path(ok)) << ok;
    }
    for (const char* bad : {"/v1/models/other/../m:predict", "/v1/models/./m:predict",
                            "/v1/models/m/..", "/v1/models/m/.", "/v1/models/m%2f..%2fn",
                            "/v1/models/%2E%2E/m", "/v1/models/m%5cx", "/v1\\models", "*",
                            "v1/models/m", "", "/a%00b", "http://host/v1/../x"}) {
        EXPECT_FALSE(safe_request_path(bad)) << bad;
    }
}

}  // namespace
}  // namespace stagegate::routing
