// Private to proxy: shadow traffic. A mirror job is a copy of one request stable served,
// sent to the rollout's candidate after the client has its answer; the candidate's answer is
// read for its prediction and compared with stable's, never relayed.
#pragma once

#include "stagegate/predictions/extract.hpp"
#include "stagegate/proxy/worker.hpp"

#include <memory>
#include <optional>
#include <string>

namespace stagegate::proxy {

// A copy of one request, sent to the candidate once the client has its answer from stable
// (so the client never shares its time with the mirror). Holds its routes so the model
// outlives it.
struct mirror_job {
    std::shared_ptr<const routing::route_snapshot> routes;
    const routing::model_route* model = nullptr;
    std::uint32_t version = routing::no_version;
    std::uint32_t series = 0;
    std::uint32_t unit = 0;  // the mirrored request's unit bucket
    std::string head;
    std::string body;
    std::optional<predictions::prediction> primary;  // stable's, to compare with
};

// Counts a mirror that never ran (queue full, or the worker is draining).
void drop_mirror(worker& w, mirror_job& job);

}  // namespace stagegate::proxy
