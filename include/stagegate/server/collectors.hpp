// server/collectors: what the data plane exposes on /metrics, as collectors for the control
// plane's metrics::registry.
// Owns: the families of the data plane's series (requests, latency, upstream failures,
// answers cut short, predictions read and judged), of its routes (traffic weights, upstream
// connections by version) and of its listeners (unrouted requests, client connections).
// Must not touch: rollouts, feedback, clusters (their own collectors expose them).
#pragma once

#include "stagegate/metrics/exposition.hpp"

namespace stagegate::server {

class data_plane;

// By (model, version, stage): requests, latency, answers cut short and predictions; upstream
// failures by (model, version).
metrics::collector series_collector(const data_plane& data);
// By version of the published routes: upstream connections, then traffic weights.
metrics::collector traffic_collector(const data_plane& data);
// Requests answered before reaching a model, then client connections.
metrics::collector downstream_collector(const data_plane& data);

}  // namespace stagegate::server
