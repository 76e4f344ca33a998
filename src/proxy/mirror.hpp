// Private to proxy: shadow traffic. A mirror job is a copy of one request stable served,
// sent to the rollout's candidate once the client has its answer; the candidate's answer goes
// through the same exchange core as a client's, into a discard_sink, and is read for its
// prediction and compared with stable's, never relayed.
// Must not touch: the client's connection or its answer (a mirror never delays either).
#pragma once

#include "http_util.hpp"
#include "request_context.hpp"

#include "stagegate/predictions/extract.hpp"
#include "stagegate/proxy/worker.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <memory>
#include <optional>
#include <string>
#include <string_view>

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
    bool grpc = false;       // a gRPC call: its grpc-status is its outcome
    std::string head;
    std::string body;
    std::optional<predictions::prediction> primary;  // stable's, to compare with
};

// Whether this request is mirrored: it went to stable, and the draw says so.
bool draw_mirror(worker& w, const routing::model_route& model, std::uint32_t version,
                 const request_context& rc);

// A copy of `req` for the model's mirror version, marked X-Stagegate-Mirror.
std::unique_ptr<mirror_job> mirror_of(const std::shared_ptr<const routing::route_snapshot>& routes,
                                      const routing::model_route& model, const client_request& req,
                                      const request_context& rc, std::string_view client_address,
                                      bool client_tls,
                                      std::optional<predictions::prediction> primary);

// Starts a mirror now, queues it, or drops it (counted) when the queue is full: the client's
// own request never waits for one.
void submit_mirror(worker& w, std::unique_ptr<mirror_job> job);

// Counts a mirror that never ran (queue full, or the worker is draining).
void drop_mirror(worker& w, mirror_job& job);

}  // namespace stagegate::proxy
