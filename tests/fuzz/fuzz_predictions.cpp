// Prediction extraction: any bytes as an answer body, read through every preset's pointers and
// a few awkward ones, plus drift statistics over bins made from the same bytes. Checks what
// must hold whatever the input: bins in range, a parsed outcome has something in it.
#include "stagegate/predictions/drift.hpp"
#include "stagegate/predictions/extract.hpp"

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {
using namespace stagegate::predictions;

spec make(const char* label, const char* value) {
    stagegate::config::predictions cfg;
    cfg.label = label;
    cfg.value = value;
    cfg.bins = 32;
    return compile(cfg);
}

const std::array<spec, 5>& specs() {
    static const std::array<spec, 5> all = {
        make("/predictions/0", "/predictions/0"),
        make("/outputs/0/data", "/outputs/0/data"),
        make("/choices/0/finish_reason", "/choices/0/message/content"),
        make("/a~1b/~0c/10", ""),
        make("", "/"),
    };
    return all;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    for (const auto& s : specs()) {
        prediction p;
        const auto o = extract(body, s, p);
        if (o == outcome::parsed && !p.has_label && !p.has_value) {
            std::abort();
        }
        if (p.has_label && p.label_bin >= label_bins) {
            std::abort();
        }
        if (p.has_value && (p.value_bin >= s.bins || !std::isfinite(p.value))) {
            std::abort();
        }
        (void)locate(body, s.label_path);
    }
    std::array<std::uint64_t, 8> a{};
    std::array<std::uint64_t, 8> b{};
    for (std::size_t i = 0; i < size; ++i) {
        (i % 2 ? a : b)[data[i] % 8] += data[i];
    }
    const double p = psi(a, b);
    const double k = ks(a, b);
    if (!(p >= -1e-9) || std::isnan(p) || !(k >= 0 && k <= 1 + 1e-9)) {
        std::abort();
    }
    return 0;
}
