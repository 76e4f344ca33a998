// metrics/wire: series_counts as compact JSON, for replicas that publish their counts for the
// leader to sum (cluster mode). Only non-zero buckets are written, so an idle series is a few
// bytes and a busy one a few hundred.
// Must not touch: how the counts are taken or judged.
#pragma once

#include "stagegate/metrics/series.hpp"

#include <nlohmann/json.hpp>

namespace stagegate::metrics {

nlohmann::json to_wire(const series_counts& counts);
// Adds what `wire` holds to `into`; false (and `into` unchanged) when it is not such a document.
bool add_from_wire(const nlohmann::json& wire, series_counts& into);

}  // namespace stagegate::metrics
