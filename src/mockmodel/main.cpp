// stagegate-mockmodel: a model server that plays a good or a bad model version.
#include "stagegate/mockmodel/mock_model.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

namespace {
constexpr const char* usage =
    "usage: stagegate-mockmodel [options]\n"
    "  --version NAME       version reported in answers (default v1)\n"
    "  --listen HOST:PORT   default 127.0.0.1:0 (the port is printed and written to --port-file)\n"
    "  --port-file FILE     write the bound port here\n"
    "  --threads N          I/O threads (default 1)\n"
    "  --latency-ms X       fixed delay per answer\n"
    "  --jitter-ms X        median of an extra lognormal delay\n"
    "  --jitter-sigma X     lognormal shape (default 0.5)\n"
    "  --error-rate P       fraction answered with --error-status (default 500)\n"
    "  --error-status N\n"
    "  --user-error-spread S  users fail at --error-rate x their own propensity: lognormal,\n"
    "                       shape S, mean 1, from a hash of --user-header (the same in every mock)\n"
    "  --user-header NAME   whose value names the user (default X-User-Id)\n"
    "  --tail-rate P        fraction answered --tail-ms later (a slow tail)\n"
    "  --tail-ms X\n"
    "  --hang-rate P        fraction never answered\n"
    "  --reset-rate P       fraction answered with a TCP reset\n"
    "  --bias X             added to every prediction\n"
    "  --classes N          answer N class scores per instance (top class from the input)\n"
    "  --disagree-rate P    fraction of answers whose top class moves to the next\n"
    "  --ttft-ms X          OpenAI streams: first token this long after --latency-ms\n"
    "  --tokens-per-second X  OpenAI streams: pace of the following tokens (default 50)\n"
    "  --answer-tokens N    OpenAI answers: tokens per answer (a stream's length, usage) (default 8)\n"
    "  --stream-cut-rate P  fraction of streams whose connection closes half-way\n"
    "  --stream-error-rate P  fraction of streams sending an error event half-way\n"
    "  --tls-cert FILE --tls-key FILE   serve TLS\n"
    "  --tls-client-ca FILE             with TLS, require client certificates this CA signed\n"
    "  --seed N             fixed random seed\n";
}

int main(int argc, char** argv) {
    stagegate::mockmodel::options o;
    std::string port_file;
    try {
        for (int i = 1; i < argc; ++i) {
            std::string arg = argv[i];
            auto next = [&]() -> std::string {
                if (i + 1 >= argc) {
                    throw std::invalid_argument(arg + " needs a value");
                }
                return argv[++i];
            };
            if (arg == "--version") o.version = next();
            else if (arg == "--listen") {
                std::string v = next();
                auto colon = v.rfind(':');
                if (colon == std::string::npos) throw std::invalid_argument("--listen wants HOST:PORT");
                o.address = v.substr(0, colon);
                o.port = static_cast<std::uint16_t>(std::stoul(v.substr(colon + 1)));
            } else if (arg == "--port-file") port_file = next();
            else if (arg == "--threads") o.threads = static_cast<std::uint32_t>(std::stoul(next()));
            else if (arg == "--latency-ms") o.latency_ms = std::stod(next());
            else if (arg == "--jitter-ms") o.jitter_ms = std::stod(next());
            else if (arg == "--jitter-sigma") o.jitter_sigma = std::stod(next());
            else if (arg == "--error-rate") o.error_rate = std::stod(next());
            else if (arg == "--error-status") o.error_status = static_cast<unsigned>(std::stoul(next()));
            else if (arg == "--user-error-spread") o.user_error_spread = std::stod(next());
            else if (arg == "--user-header") o.user_header = next();
            else if (arg == "--tail-rate") o.tail_rate = std::stod(next());
            else if (arg == "--tail-ms") o.tail_ms = std::stod(next());
            else if (arg == "--hang-rate") o.hang_rate = std::stod(next());
            else if (arg == "--reset-rate") o.reset_rate = std::stod(next());
            else if (arg == "--bias") o.bias = std::stod(next());
            else if (arg == "--classes") o.classes = static_cast<std::uint32_t>(std::stoul(next()));
            else if (arg == "--disagree-rate") o.disagree_rate = std::stod(next());
            else if (arg == "--ttft-ms") o.ttft_ms = std::stod(next());
            else if (arg == "--tokens-per-second") o.tokens_per_second = std::stod(next());
            else if (arg == "--answer-tokens") o.answer_tokens = static_cast<std::uint32_t>(std::stoul(next()));
            else if (arg == "--stream-cut-rate") o.stream_cut_rate = std::stod(next());
            else if (arg == "--stream-error-rate") o.stream_error_rate = std::stod(next());
            else if (arg == "--tls-cert") o.cert_file = next();
            else if (arg == "--tls-key") o.key_file = next();
            else if (arg == "--tls-client-ca") o.client_ca_file = next();
            else if (arg == "--seed") o.seed = std::stoull(next());
            else if (arg == "--help" || arg == "-h") { std::cout << usage; return 0; }
            else throw std::invalid_argument("unknown argument " + arg);
        }
    } catch (const std::exception& e) {
        std::cerr << "stagegate-mockmodel: " << e.what() << "\n" << usage;
        return 2;
    }
    stagegate::mockmodel::server server(o);
    if (auto started = server.start(); !started) {
        std::cerr << "stagegate-mockmodel: " << started.error().describe() << "\n";
        return 1;
    }
    std::cerr << "stagegate-mockmodel: version " << o.version << " on " << o.address << ":"
              << server.port() << "\n";
    if (!port_file.empty()) {
        std::string tmp = port_file + ".tmp";
        { std::ofstream(tmp) << server.port() << "\n"; }
        std::rename(tmp.c_str(), port_file.c_str());
    }
    boost::asio::io_context signals_io;
    boost::asio::signal_set signals(signals_io, SIGTERM, SIGINT);
    signals.async_wait([](boost::system::error_code, int) {});
    signals_io.run();
    server.stop();
    return 0;
}
