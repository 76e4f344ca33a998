// stagegate: the gateway executable. Parses flags (Boost.Program_options), loads the config,
// runs the gateway until SIGTERM/SIGINT, then drains and exits 0.
#include "stagegate/config/config.hpp"
#include "stagegate/app/gateway.hpp"
#include "stagegate/core/command_line.hpp"
#include "stagegate/core/log.hpp"

#include <boost/asio/signal_set.hpp>
#include <boost/program_options.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <thread>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace po = boost::program_options;

po::options_description described_options() {
    po::options_description d("options", 100, 50);
    d.add_options()
        ("config", po::value<std::string>()->value_name("FILE"),
         "run the gateway with this JSON config")
        ("check-config", po::value<std::string>()->value_name("FILE"),
         "validate FILE, print every problem with its JSON path, exit 1 if any")
        ("port-file", po::value<std::string>()->value_name("FILE"),
         "after binding, write the bound port of each listener (one a line)")
        ("admin-port-file", po::value<std::string>()->value_name("FILE"),
         "after binding, write the admin listener's bound port (one line); written before "
         "--port-file, so once that file exists this one does")
        ("workers", po::value<std::string>()->value_name("N"),
         "override the config's worker thread count (0 to 1024)")
        ("log-level", po::value<std::string>()->value_name("LEVEL"),
         "debug, info (default), warn or error; log lines are logfmt on stderr")
        ("help,h", po::bool_switch(), "print this help");
    return d;
}

std::string usage() {
    std::ostringstream u;
    u << "usage: stagegate --config FILE [--port-file FILE] [--admin-port-file FILE]\n"
         "       stagegate --check-config FILE\n\n"
      << described_options();
    return u.str();
}

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
    po::variables_map vm;
    try {
        // Every word is an option: an argument standing alone is refused by name.
        po::options_description all = described_options();
        all.add_options()("argument", po::value<std::vector<std::string>>());
        po::positional_options_description positional;
        positional.add("argument", -1);
        po::store(po::command_line_parser(argc, argv)
                      .options(all)
                      .positional(positional)
                      .style(stagegate::command_line_style)
                      .run(),
                  vm);
    } catch (const po::error& e) {
        std::cerr << "stagegate: " << stagegate::describe_option_error(e) << "\n" << usage();
        return 2;
    }
    if (vm.count("argument")) {
        std::cerr << "stagegate: unexpected argument "
                  << vm["argument"].as<std::vector<std::string>>().front() << "\n"
                  << usage();
        return 2;
    }
    auto text = [&](const char* name) {
        return vm.count(name) ? vm[name].as<std::string>() : std::string();
    };
    if (vm["help"].as<bool>()) {
        std::cout << usage();
        return 0;
    }
    if (vm.count("check-config")) {
        return check_config(text("check-config"));
    }
    const std::string config_path = text("config");
    const std::string port_file = text("port-file");
    const std::string admin_port_file = text("admin-port-file");
    long workers = -1;
    if (vm.count("workers")) {
        const std::string v = text("workers");
        char* end = nullptr;
        workers = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end || workers < 0 || workers > 1024) {
            std::cerr << "stagegate: --workers expects 0..1024, got " << v << "\n";
            return 2;
        }
    }
    const bool log_level_given = vm.count("log-level") > 0;
    if (log_level_given) {
        const std::string v = text("log-level");
        auto l = stagegate::log::parse_level(v);
        if (!l) {
            std::cerr << "stagegate: --log-level expects debug, info, warn or error, got " << v
                      << "\n";
            return 2;
        }
        stagegate::log::set_level(*l);
    }
    if (config_path.empty()) {
        std::cerr << usage();
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
