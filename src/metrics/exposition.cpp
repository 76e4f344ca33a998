#include "stagegate/metrics/exposition.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <limits>
#include <sstream>

namespace stagegate::metrics {

namespace {

// The text format escapes backslashes and newlines in HELP; TextSerializer writes it as is
// (label values it escapes itself).
std::string escaped_help(const std::string& help) {
    std::string out;
    out.reserve(help.size());
    for (char c : help) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

}  // namespace

family& family::add(label_set labels, double value) {
    samples_.push_back({std::move(labels), value, {}, {}});
    return *this;
}

family& family::add(label_set labels, histogram_value value) {
    samples_.push_back({std::move(labels), 0, std::move(value), {}});
    return *this;
}

family& family::add(label_set labels, summary_value value) {
    samples_.push_back({std::move(labels), 0, {}, std::move(value)});
    return *this;
}

family& family::add(label_set labels, const latency_histogram& h,
                    std::span<const double> bounds_seconds, double scale) {
    histogram_value v;
    v.count = h.count();
    v.sum = static_cast<double>(h.sum_micros()) / scale;
    for (double bound : bounds_seconds) {
        v.buckets.emplace_back(bound, h.count_below(bound * scale));
    }
    v.buckets.emplace_back(std::numeric_limits<double>::infinity(), h.count());
    return add(std::move(labels), std::move(v));
}

family& text_writer::counter(std::string name, std::string help) {
    return families_.emplace_back(std::move(name), std::move(help), metric_type::counter);
}

family& text_writer::gauge(std::string name, std::string help) {
    return families_.emplace_back(std::move(name), std::move(help), metric_type::gauge);
}

family& text_writer::histogram(std::string name, std::string help) {
    return families_.emplace_back(std::move(name), std::move(help), metric_type::histogram);
}

family& text_writer::summary(std::string name, std::string help) {
    return families_.emplace_back(std::move(name), std::move(help), metric_type::summary);
}

void text_writer::single(std::string name, std::string help, metric_type type, double value) {
    families_.emplace_back(std::move(name), std::move(help), type).add({}, value);
}

std::string text_writer::text() const {
    std::vector<prometheus::MetricFamily> out;
    out.reserve(families_.size());
    for (const auto& f : families_) {
        prometheus::MetricFamily pf;
        pf.name = f.name();
        pf.help = escaped_help(f.help());
        switch (f.type()) {
        case metric_type::counter:
            pf.type = prometheus::MetricType::Counter;
            break;
        case metric_type::gauge:
            pf.type = prometheus::MetricType::Gauge;
            break;
        case metric_type::histogram:
            pf.type = prometheus::MetricType::Histogram;
            break;
        case metric_type::summary:
            pf.type = prometheus::MetricType::Summary;
            break;
        }
        for (const auto& s : f.samples()) {
            prometheus::ClientMetric m;
            for (const auto& [name, value] : s.labels) {
                m.label.push_back({name, value});
            }
            switch (f.type()) {
            case metric_type::counter:
                m.counter.value = s.value;
                break;
            case metric_type::gauge:
                m.gauge.value = s.value;
                break;
            case metric_type::histogram:
                m.histogram.sample_count = s.histogram.count;
                m.histogram.sample_sum = s.histogram.sum;
                for (const auto& [bound, count] : s.histogram.buckets) {
                    m.histogram.bucket.push_back({count, bound});
                }
                break;
            case metric_type::summary:
                m.summary.sample_count = s.summary.count;
                m.summary.sample_sum = s.summary.sum;
                for (const auto& [q, value] : s.summary.quantiles) {
                    m.summary.quantile.push_back({q, value});
                }
                break;
            }
            pf.metric.push_back(std::move(m));
        }
        out.push_back(std::move(pf));
    }
    return prometheus::TextSerializer().Serialize(out);
}

std::string registry::render() const {
    text_writer out;
    for (const auto& c : collectors_) {
        c(out);
    }
    return out.text();
}

void write_process_metrics(text_writer& out) {
    // /proc/self/stat: utime(14) stime(15) starttime(22) vsize(23) rss(24), in ticks and pages.
    std::ifstream stat_file("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    auto close = stat.rfind(')');
    if (close == std::string::npos) {
        return;
    }
    std::istringstream fields(stat.substr(close + 2));
    std::vector<std::string> f;
    for (std::string x; fields >> x;) {
        f.push_back(x);
    }
    if (f.size() < 22) {
        return;
    }
    // f[0] is field 3 (state): field n is f[n - 3].
    const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
    const double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;
    double boot_time = 0;
    std::ifstream proc_stat("/proc/stat");
    for (std::string line; std::getline(proc_stat, line);) {
        if (line.rfind("btime ", 0) == 0) {
            boot_time = std::stod(line.substr(6));
        }
    }
    const double start = boot_time + std::stod(f[19]) / ticks;
    out.single("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
               metric_type::counter, cpu);
    out.single("process_start_time_seconds",
               "Start time of the process since unix epoch in seconds.", metric_type::gauge,
               start);
    out.single("process_virtual_memory_bytes", "Virtual memory size in bytes.",
               metric_type::gauge, std::stod(f[20]));
    out.single("process_resident_memory_bytes", "Resident memory size in bytes.",
               metric_type::gauge, std::stod(f[21]) * page);
    double fds = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (::readdir(d)) {
            ++fds;
        }
        ::closedir(d);
        fds -= 3;  // ".", ".." and the directory's own descriptor
    }
    out.single("process_open_fds", "Number of open file descriptors.", metric_type::gauge, fds);
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        out.single("process_max_fds", "Maximum number of open file descriptors.",
                   metric_type::gauge, static_cast<double>(lim.rlim_cur));
    }
}

}  // namespace stagegate::metrics
