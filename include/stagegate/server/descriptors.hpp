// server/descriptors: how many client connections fit under the process's descriptor limit.
// Owns raising RLIMIT_NOFILE's soft limit to its hard one at start (as nginx's
// worker_rlimit_nofile and Envoy do) and capping the per-worker connection limit so that
// clients run into the gateway's own 503 "overloaded" answer, never into EMFILE: descriptors
// running out stalled new clients for 8-10 s and starved the admin API.
// Must not touch: sockets, config parsing (the caller applies the cap and logs it).
#pragma once

#include <cstdint>

namespace stagegate::server {

// Raises the soft RLIMIT_NOFILE to the hard one (no-op where it already is, or unlimited);
// returns the soft limit now in force.
std::uint64_t raise_descriptor_limit();

struct descriptor_fit {
    std::uint32_t per_worker = 0;  // client connections each worker may hold
    std::uint64_t reserve = 0;     // descriptors kept off the client budget
    bool capped = false;           // per_worker is below what was configured
};

// Each client connection may hold an upstream connection (kept idle in the pool after its
// exchange): two descriptors. The reserve is for everything else (listeners, the admin API and
// its clients, state and log files, etcd, webhooks, mirrors): a quarter of the limit, at most
// 1,024. At least one connection per worker fits, whatever the limit.
descriptor_fit fit_connections(std::uint64_t descriptor_limit, std::uint32_t workers,
                               std::uint32_t configured_per_worker);

}  // namespace stagegate::server
