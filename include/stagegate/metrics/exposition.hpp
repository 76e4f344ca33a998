// metrics/exposition: Prometheus text exposition by collectors.
// Owns: the text writer (families with their HELP and TYPE lines; counter, gauge and
// histogram samples; help and label values escaped; rendered with prometheus-cpp's
// TextSerializer, whose Counter/Histogram types are never used on the request path; summaries
// for quantiles computed by the component), the
// registry that renders its collectors in the order they were added, and the standard
// process_* metrics read from /proc.
// Must not touch: what any component exposes. Each component (the data plane's series,
// rollouts, feedback, webhooks, the cluster, ...) writes its own families through a collector
// registered where it is created; this module knows none of them.
#pragma once

#include "stagegate/metrics/histogram.hpp"

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace stagegate::metrics {

// Upper bounds (seconds) of duration histograms: inference-shaped, 1 ms..30 s.
inline constexpr std::array<double, 14> duration_buckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
// Upper bounds (tokens per second) of token rate histograms: a slow CPU model to a fast GPU one.
inline constexpr std::array<double, 12> token_rate_buckets = {
    1, 2.5, 5, 10, 25, 50, 75, 100, 150, 250, 500, 1000};

enum class metric_type { counter, gauge, histogram, summary };

// Label names and values, in the order they are written.
using label_set = std::vector<std::pair<std::string, std::string>>;

struct histogram_value {
    std::uint64_t count = 0;
    double sum = 0;
    // (upper bound, cumulative count), ascending; a +Inf bucket is added when missing.
    std::vector<std::pair<double, std::uint64_t>> buckets;
};

// A summary's sample: quantiles of the observations (quantile label written "0.5", "0.99"),
// their count and their sum, as Prometheus summaries are exposed.
struct summary_value {
    std::uint64_t count = 0;
    double sum = 0;
    std::vector<std::pair<double, double>> quantiles;  // (q in [0, 1], value)
};

// One metric family: its name, help and type, and its samples in the order added. A family
// without samples still writes its HELP and TYPE lines.
class family {
public:
    family(std::string name, std::string help, metric_type type)
        : name_(std::move(name)), help_(std::move(help)), type_(type) {}

    // A counter's or gauge's sample.
    family& add(label_set labels, double value);
    // A histogram's sample.
    family& add(label_set labels, histogram_value value);
    // A summary's sample.
    family& add(label_set labels, summary_value value);
    // A latency histogram's sample in seconds, with buckets at `bounds_seconds` and +Inf.
    // `scale`: the histogram's integer units per exposed unit (microseconds per second; for
    // another quantity kept in one, such as metrics::token_rate_scale).
    family& add(label_set labels, const latency_histogram& h,
                std::span<const double> bounds_seconds, double scale = 1e6);

    const std::string& name() const { return name_; }
    const std::string& help() const { return help_; }
    metric_type type() const { return type_; }

    struct sample {
        label_set labels;
        double value = 0;
        histogram_value histogram;  // histograms only
        summary_value summary;      // summaries only
    };
    const std::vector<sample>& samples() const { return samples_; }

private:
    std::string name_;
    std::string help_;
    metric_type type_;
    std::vector<sample> samples_;
};

// Families in the order they are started; references stay valid while the writer lives.
class text_writer {
public:
    family& counter(std::string name, std::string help);
    family& gauge(std::string name, std::string help);
    family& histogram(std::string name, std::string help);
    family& summary(std::string name, std::string help);
    // A family of one unlabelled sample.
    void single(std::string name, std::string help, metric_type type, double value);

    const std::deque<family>& families() const { return families_; }
    // The Prometheus text format (version 0.0.4) of every family.
    std::string text() const;

private:
    std::deque<family> families_;
};

// Writes a component's families; called on the thread that renders (the control thread).
using collector = std::function<void(text_writer&)>;

class registry {
public:
    void add(collector c) { collectors_.push_back(std::move(c)); }
    std::size_t size() const { return collectors_.size(); }
    // Every collector's families, in the order the collectors were added.
    std::string render() const;

private:
    std::vector<collector> collectors_;
};

// The standard process_* metrics (CPU, start time, memory, file descriptors) from /proc.
void write_process_metrics(text_writer& out);

}  // namespace stagegate::metrics
