// stagegate: the gateway executable. Parses flags, loads the config, runs the gateway until
// SIGTERM/SIGINT, then drains and exits 0.
#include "stagegate/config/config.hpp"
#include "stagegate/app/gateway.hpp"
#include "stagegate/core/log.hpp"

#include <boost/asio/signal_set.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <thread>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr const char* usage =
    "usage: stagegate --config FILE [--port-file FILE] [--admin-port-file FILE]\n"
    "       stagegate --check-config FILE\n"
    "\n"
    "  --config FILE        run the gateway with this JSON config\n"
    "  --check-config FILE  validate FILE, print every problem with its JSON path, exit 1 if any\n"
    "  --port-file FILE     after binding, write the bound port of each listener (one a line)\n"
    "  --admin-port-file FILE\n"
    "                       after binding, write the admin listener's bound port (one line);\n"
    "                       written before --port-file, so once that file exists this one does\n"
    "  --workers N          override the config's worker thread count\n"
    "  --log-level LEVEL    debug, info (default), warn or error; log lines are logfmt on stderr\n";

// Writes `ports`, one a line, to `path` by rename: a reader polling for the file never sees
// a partial one.
void write_port_file(const std::string& path, const std::vector<std::uint16_t>& ports) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp);
        for (auto p : ports) {
            out << p << "\n";
        }
    }
    std::rename(tmp.c_str(), path.c_str());
}

int check_config(const std::string& path) {
    auto cfg = stagegate::config::load_file(path);
    if (!cfg) {
        std::cerr << path << ": " << cfg.error().describe() << "\n";
        return 1;
    }
    if (auto missing = stagegate::config::check_files(*cfg); !missing.empty()) {
        stagegate::error e{"bad_file", std::to_string(missing.size()) +
                                           " problem(s) with the files the config names",
                           std::move(missing)};
        std::cerr << path << ": " << e.describe() << "\n";
        return 1;
    }
    std::cout << path << ": ok (" << cfg->models.size() << " model(s), " << cfg->listeners.size()
              << " listener(s))\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string config_path;
    bool log_level_given = false;
    std::string port_file;
    std::string admin_port_file;
    long workers = -1;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << "stagegate: " << arg << " needs a value\n" << usage;
                std::exit(2);
            }
            return argv[++i];
        };
        if (arg == "--check-config") {
            return check_config(next());
        } else if (arg == "--config") {
            config_path = next();
        } else if (arg == "--port-file") {
            port_file = next();
        } else if (arg == "--admin-port-file") {
            admin_port_file = next();
        } else if (arg == "--workers") {
            std::string v = next();
            char* end = nullptr;
            workers = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end || workers < 0 || workers > 1024) {
                std::cerr << "stagegate: --workers expects 0..1024, got " << v << "\n";
                return 2;
            }
        } else if (arg == "--log-level") {
            std::string v = next();
            auto l = stagegate::log::parse_level(v);
            if (!l) {
                std::cerr << "stagegate: --log-level expects debug, info, warn or error, got " << v
                          << "\n";
                return 2;
            }
            stagegate::log::set_level(*l);
            log_level_given = true;
        } else if (arg == "--help" || arg == "-h") {
            std::cout << usage;
            return 0;
        } else {
            std::cerr << "stagegate: unknown argument " << arg << "\n" << usage;
            return 2;
        }
    }
    if (config_path.empty()) {
        std::cerr << usage;
        return 2;
    }
    auto cfg = stagegate::config::load_file(config_path);
    if (!cfg) {
        std::cerr << config_path << ": " << cfg.error().describe() << "\n";
        return 1;
    }
    if (workers >= 0) {
        cfg->workers = static_cast<std::uint32_t>(workers);
    }
    if (!log_level_given) {
        stagegate::log::set_level(*stagegate::log::parse_level(cfg->log.level));  // validated
    }
    if (!admin_port_file.empty() && !cfg->admin_listener.enabled) {
        // An empty or "0" file would read as a port to a script; refusing says what is wrong.
        std::cerr << "stagegate: --admin-port-file given, but " << config_path
                  << " disables the admin listener\n";
        return 2;
    }
    stagegate::app::gateway gw(std::move(*cfg));
    gw.set_config_path(config_path);
    if (auto started = gw.start(); !started) {
        stagegate::log::error("main", "cannot start", {{"error", started.error().describe()}});
        return 1;
    }
    boost::asio::signal_set signals(gw.control(), SIGTERM, SIGINT);
    signals.async_wait([&gw](boost::system::error_code ec, int sig) {
        if (!ec) {
            stagegate::log::info("main", "draining", {{"signal", ::strsignal(sig)}});
            gw.stop();
        }
    });
    // SIGHUP reloads the config (as nginx does). The reload blocks on the control thread, so
    // it runs on this thread, which only waits otherwise.
    boost::asio::io_context hup_io;
    boost::asio::signal_set hup(hup_io, SIGHUP);
    std::function<void()> await_hup = [&] {
        hup.async_wait([&](boost::system::error_code ec, int) {
            if (ec) {
                return;
            }
            auto reloaded = gw.reload("SIGHUP");
            if (!reloaded) {
                stagegate::log::error("main", "reload refused",
                                      {{"error", reloaded.error().describe()}});
            }
            await_hup();
        });
    };
    await_hup();
    std::thread hup_thread([&] { hup_io.run(); });
    std::string ports;
    for (auto p : gw.ports()) {
        ports += (ports.empty() ? "" : ",") + std::to_string(p);
    }
    stagegate::log::info("main", "serving",
                         {{"workers", std::to_string(gw.worker_count())},
                          {"ports", ports},
                          {"admin_port", std::to_string(gw.admin_port())}});
    // The admin port first: a reader that waits for --port-file (the traffic listeners, the
    // usual sign that the gateway is up) finds the admin port already there.
    if (!admin_port_file.empty()) {
        write_port_file(admin_port_file, {gw.admin_port()});
    }
    if (!port_file.empty()) {
        write_port_file(port_file, gw.ports());
    }
    gw.wait();
    hup.cancel();
    hup_io.stop();
    hup_thread.join();
    stagegate::log::info("main", "stopped");
    return 0;
}
