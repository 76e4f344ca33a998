// The descriptor budget at start. See descriptors.hpp.
#include "stagegate/server/descriptors.hpp"

#include <sys/resource.h>

#include <algorithm>

namespace stagegate::server {

std::uint64_t raise_descriptor_limit() {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) {
        return 1024;  // the usual default; the cap then errs on the safe side
    }
    if (lim.rlim_cur != lim.rlim_max) {
        rlimit raised = lim;
        raised.rlim_cur = lim.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            lim = raised;
        }
    }
    return lim.rlim_cur == RLIM_INFINITY ? UINT64_MAX : static_cast<std::uint64_t>(lim.rlim_cur);
}

descriptor_fit fit_connections(std::uint64_t descriptor_limit, std::uint32_t workers,
                               std::uint32_t configured_per_worker) {
    descriptor_fit out;
    workers = std::max<std::uint32_t>(workers, 1);
    out.reserve = std::min<std::uint64_t>(descriptor_limit / 4, 1024);
    const std::uint64_t per_worker = (descriptor_limit - out.reserve) / 2 / workers;
    out.per_worker = static_cast<std::uint32_t>(
        std::clamp<std::uint64_t>(per_worker, 1, configured_per_worker));
    out.capped = out.per_worker < configured_per_worker;
    return out;
}

}  // namespace stagegate::server
