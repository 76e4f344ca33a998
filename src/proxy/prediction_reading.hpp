// Private to proxy: what an answer's captured body says, read after the answer went out (the
// client never waits for it): prediction counts, mirror comparisons, answers kept for feedback.
// Must not touch: sockets, routing; all of it writes only the worker's shard and served list.
#pragma once

#include "exchange.hpp"

#include "stagegate/predictions/extract.hpp"
#include "stagegate/proxy/worker.hpp"
#include "stagegate/routing/route_snapshot.hpp"

#include <optional>
#include <string_view>

namespace stagegate::proxy {

// Counts what an answer's body held; the prediction when one was read.
std::optional<predictions::prediction> read_prediction(worker& w, const routing::model_route& model,
                                                       std::uint32_t series,
                                                       const body_capture& capture);

// Counts how the candidate's answer to a mirrored request compares with stable's.
void compare(worker& w, std::uint32_t series, const predictions::prediction& stable,
             const predictions::prediction& candidate);

// Keeps an answer for joining feedback to it, while the worker's list has room.
void remember_answer(worker& w, std::string_view request_id, std::uint32_t series,
                     const predictions::prediction& p);

}  // namespace stagegate::proxy
