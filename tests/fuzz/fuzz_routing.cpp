// Route matching: request targets, bodies, cookies and URLs from any bytes. The input is split
// at the first NUL into a target and the rest (body, cookie header, gRPC message).
#include "stagegate/config/config.hpp"
#include "stagegate/core/http_client.hpp"
#include "stagegate/core/text.hpp"
#include "stagegate/routing/grpc_call.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {
const stagegate::routing::route_snapshot& routes() {
    static const auto snap = [] {
        auto cfg = stagegate::config::parse(R"({"listeners": [{"port": 0}],
          "models": [
            {"name": "m", "stable": "v1",
             "versions": [{"name": "v1", "endpoints": ["127.0.0.1:1"]},
                          {"name": "v2", "endpoints": ["127.0.0.1:2"]}],
             "traffic": {"weights": {"v1": 9000, "v2": 1000}, "sticky": {"cookie": "user"}},
             "match": {"path_prefixes": ["/custom/m", "/a/b"]}},
            {"name": "m.v2-x", "stable": "a", "versions": [{"name": "a", "endpoints": ["127.0.0.1:3"]}]}
          ]})");
        if (!cfg) {
            std::abort();
        }
        stagegate::routing::endpoint_registry registry;
        std::uint32_t next = 0;
        auto built = stagegate::routing::build_snapshot(
            *cfg, registry, [&](std::string_view, std::string_view, std::string_view) { return next++; });
        if (!built) {
            std::abort();
        }
        return *built;
    }();
    return *snap;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace stagegate;
    std::string_view in(reinterpret_cast<const char*>(data), size);
    auto nul = in.find('\0');
    std::string_view target = in.substr(0, nul);
    std::string_view rest = nul == std::string_view::npos ? std::string_view{} : in.substr(nul + 1);
    const auto& snap = routes();
    (void)routing::safe_request_path(target);
    auto match = routing::match_path(snap, target);
    if (match.outcome == routing::match_outcome::model && match.model) {
        auto key = routing::find_cookie(rest, "user");
        auto point = routing::point_from_u64(routing::sticky_hash(key, match.model->hash_salt));
        if (point >= routing::total_weight) {
            std::abort();
        }
        if (routing::pick_version(*match.model, point) >= match.model->versions.size()) {
            std::abort();
        }
    }
    if (auto name = routing::body_model_field(rest)) {
        (void)routing::match_body_model(snap, *name);
    }
    // A gRPC call's model name: read in place, so it must lie inside the body.
    for (auto service : {"/inference.GRPCInferenceService/ModelInfer",
                         "/tensorflow.serving.PredictionService/Predict"}) {
        const auto call = routing::parse_grpc_path(service);
        const auto got = routing::read_grpc_model_name(call, rest);
        if (got.status == routing::grpc_read::found &&
            (got.name.empty() || got.name.data() < rest.data() ||
             got.name.data() + got.name.size() > rest.data() + rest.size())) {
            std::abort();
        }
    }
    (void)routing::parse_grpc_path(target);
    (void)parse_http_url(target);
    (void)percent_decode(target, true);
    auto encoded = percent_encode(target);
    auto decoded = percent_decode(encoded, false);
    if (!decoded || *decoded != target) {
        std::abort();  // encoding must round-trip
    }
    return 0;
}
