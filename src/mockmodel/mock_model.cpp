#include "stagegate/mockmodel/mock_model.hpp"
#include "stagegate/core/asio.hpp"
#include "stagegate/core/tls_files.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

namespace stagegate::mockmodel {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;

namespace {

double score(const json& instance) {
    double sum = 0;
    std::size_t n = 0;
    auto add = [&](const json& v) {
        if (v.is_number()) {
            sum += v.get<double>();
            ++n;
        }
    };
    if (instance.is_array()) {
        for (const auto& v : instance) {
            add(v);
        }
    } else {
        add(instance);
    }
    double mean = n ? sum / static_cast<double>(n) : 0.0;
    return 1.0 / (1.0 + std::exp(-mean));
}

// An embedding as OpenAI's encoding_format "base64" sends it: little-endian float32s.
std::string base64_floats(const std::vector<float>& values) {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string bytes(values.size() * 4, '\0');
    for (std::size_t i = 0; i < values.size(); ++i) {
        std::uint32_t bits = 0;
        std::memcpy(&bits, &values[i], 4);
        for (int b = 0; b < 4; ++b) {
            bytes[i * 4 + static_cast<std::size_t>(b)] = static_cast<char>((bits >> (8 * b)) & 0xff);
        }
    }
    std::string out;
    for (std::size_t i = 0; i < bytes.size(); i += 3) {
        std::uint32_t n = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
        if (i + 1 < bytes.size()) n |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
        if (i + 2 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 2]);
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        out += i + 1 < bytes.size() ? alphabet[(n >> 6) & 63] : '=';
        out += i + 2 < bytes.size() ? alphabet[n & 63] : '=';
    }
    return out;
}

std::uint64_t header_number(const http::request<http::string_body>& req, std::string_view name) {
    auto it = req.find(name);
    if (it == req.end()) {
        return 0;
    }
    try {
        return std::stoull(std::string(it->value()));
    } catch (...) {
        return 0;
    }
}
}  // namespace

// From an FNV-1a hash of the user's id, mixed, as two 26-bit uniforms (Box-Muller): the same
// in every process.
double user_error_propensity(std::string_view user, double spread) {
    std::uint64_t h = 1469598103934665603ULL;
    for (const char c : user) {
        h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    }
    h ^= h >> 29;  // FNV's low bits mix poorly
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    const double u1 = (static_cast<double>(h >> 38) + 0.5) / static_cast<double>(1ULL << 26);
    const double u2 = (static_cast<double>((h >> 12) & ((1ULL << 26) - 1)) + 0.5) /
                      static_cast<double>(1ULL << 26);
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.141592653589793 * u2);
    return std::exp(spread * z - spread * spread / 2);
}

struct server::impl {
    options opt;
    net::io_context io;
    tcp::acceptor acceptor{io};
    std::shared_ptr<net::ssl::context> tls;
    std::vector<std::thread> threads;
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> requests{0};
    std::mutex rng_mutex;  // the mock is not a hot path; one generator keeps seeds meaningful
    std::mt19937_64 rng;
    std::uint16_t port = 0;

    double uniform() {
        std::lock_guard lock(rng_mutex);
        return std::uniform_real_distribution<double>(0, 1)(rng);
    }
    double normal() {
        std::lock_guard lock(rng_mutex);
        return std::normal_distribution<double>(0, 1)(rng);
    }

    // One instance's prediction: the score plus bias, or class scores whose top class comes
    // from the score (and moves to the next class for a disagree_rate share of them).
    // An OpenAI answer's length in tokens, and a stream's pace: the options, or the request's
    // X-Mock-Answer-Tokens and X-Mock-Tokens-Per-Second.
    std::uint32_t answer_tokens(const http::request<http::string_body>& req) const {
        const auto asked = header_number(req, "X-Mock-Answer-Tokens");
        return std::max<std::uint32_t>(
            1, asked > 0 ? static_cast<std::uint32_t>(std::min<std::uint64_t>(asked, 1u << 20))
                         : opt.answer_tokens);
    }
    double tokens_per_second(const http::request<http::string_body>& req) const {
        const auto asked = header_number(req, "X-Mock-Tokens-Per-Second");
        return asked > 0 ? static_cast<double>(asked) : opt.tokens_per_second;
    }

    json prediction_for(double s) {
        if (opt.classes < 2) {
            return s + opt.bias;
        }
        const auto n = opt.classes;
        auto top = std::min<std::uint32_t>(n - 1, static_cast<std::uint32_t>(s * n));
        if (opt.disagree_rate > 0 && uniform() < opt.disagree_rate) {
            top = (top + 1) % n;
        }
        json scores = json::array();
        for (std::uint32_t k = 0; k < n; ++k) {
            scores.push_back(k == top ? 0.6 : 0.4 / (n - 1));
        }
        return scores;
    }

    json predict(const http::request<http::string_body>& req, std::string_view path) {
        json body = json::parse(req.body(), nullptr, false);
        if (path.rfind("/v2/models/", 0) == 0) {
            json data = json::array();
            if (body.is_object() && body.contains("inputs") && body["inputs"].is_array() &&
                !body["inputs"].empty() && body["inputs"][0].contains("data")) {
                for (const auto& v : body["inputs"][0]["data"]) {
                    data.push_back(score(v) + opt.bias);
                }
            }
            std::string name(path.substr(11, path.find('/', 11) - 11));
            return {{"model_name", name},
                    {"model_version", opt.version},
                    {"outputs",
                     {{{"name", "output0"},
                       {"datatype", "FP64"},
                       {"shape", {data.size()}},
                       {"data", data}}}}};
        }
        if (path == "/v1/chat/completions" || path == "/v1/completions") {
            std::string model = body.is_object() ? body.value("model", "") : "";
            std::string text = "answer from " + opt.version;
            json choice = {{"index", 0}, {"finish_reason", "stop"}};
            if (path == "/v1/chat/completions") {
                choice["message"] = {{"role", "assistant"}, {"content", text}};
            } else {
                choice["text"] = text;
            }
            // The usage a real server reports: the answer's length in tokens (answer_tokens,
            // or X-Mock-Answer-Tokens), whatever the text says.
            const std::uint32_t tokens = answer_tokens(req);
            return {{"id", "cmpl-mock"},
                    {"object", path == "/v1/completions" ? "text_completion" : "chat.completion"},
                    {"model", model},
                    {"system_fingerprint", opt.version},
                    {"choices", {choice}},
                    {"usage",
                     {{"prompt_tokens", 3},
                      {"completion_tokens", tokens},
                      {"total_tokens", 3 + tokens}}}};
        }
        if (path == "/v1/embeddings") {
            std::string model = body.is_object() ? body.value("model", "") : "";
            json data = json::array();
            const json input = body.is_object() && body.contains("input") ? body["input"] : json();
            const std::size_t n = input.is_array() ? std::max<std::size_t>(1, input.size()) : 1;
            for (std::size_t i = 0; i < n; ++i) {
                const double s = input.is_array() && i < input.size() && input[i].is_string()
                                     ? static_cast<double>(input[i].get<std::string>().size())
                                     : 1.0;
                const std::vector<float> v = {static_cast<float>(s / 100 + opt.bias), 0.5f,
                                              -0.25f, 0.125f};
                json embedding = v;
                if (body.is_object() && body.value("encoding_format", "float") == "base64") {
                    embedding = base64_floats(v);
                }
                data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", embedding}});
            }
            return {{"object", "list"},
                    {"data", data},
                    {"model", model},
                    {"usage", {{"prompt_tokens", 2 * n}, {"total_tokens", 2 * n}}}};
        }
        json predictions = json::array();
        if (body.is_object() && body.contains("instances") && body["instances"].is_array()) {
            for (const auto& inst : body["instances"]) {
                predictions.push_back(prediction_for(score(inst)));
            }
        }
        return {{"predictions", predictions}, {"model_version", opt.version}};
    }

    // An OpenAI chat or completions answer streamed as Server-Sent Events over a chunked body:
    // the head at once, the first token after ttft, then one per 1/tokens_per_second, the
    // usage chunk when stream_options.include_usage asks, and data: [DONE]. A cut stream closes
    // the connection half-way; a failed one sends an error event half-way and ends the body
    // without [DONE]. Returns whether the connection may serve another request.
    template <class Stream>
    net::awaitable<bool> stream_answer(Stream& stream, const http::request<http::string_body>& req,
                                       const std::string& path, const json& body, bool close) {
        const bool chat = path == "/v1/chat/completions";
        const std::string model = body.value("model", "");
        const bool usage = body.contains("stream_options") && body["stream_options"].is_object() &&
                           body["stream_options"].value("include_usage", false);
        const bool cut = req.count("X-Mock-Stream-Cut") ||
                         (opt.stream_cut_rate > 0 && uniform() < opt.stream_cut_rate);
        const bool fail = req.count("X-Mock-Stream-Error") ||
                          (opt.stream_error_rate > 0 && uniform() < opt.stream_error_rate);
        const double ttft =
            opt.ttft_ms + static_cast<double>(header_number(req, "X-Mock-Ttft-Ms"));
        const std::uint32_t tokens = answer_tokens(req);
        auto write = [&](std::string_view data) -> net::awaitable<bool> {
            char size[24];
            const int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
            std::array<net::const_buffer, 3> parts{net::buffer(size, static_cast<std::size_t>(n)),
                                                   net::buffer(data.data(), data.size()),
                                                   net::buffer("\r\n", 2)};
            auto [ec, written] = co_await net::async_write(stream, parts, nothrow_awaitable);
            co_return !ec;
        };
        auto pause = [&](double ms) -> net::awaitable<void> {
            if (ms > 0) {
                net::steady_timer timer(stream.get_executor(),
                                        std::chrono::microseconds(static_cast<long>(ms * 1000)));
                co_await timer.async_wait(nothrow_awaitable);
            }
        };
        std::string head =
            "HTTP/1.1 200 OK\r\nServer: stagegate-mockmodel\r\nContent-Type: text/event-stream\r\n"
            "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nX-Mock-Version: " +
            opt.version + "\r\n";
        head += close ? "Connection: close\r\n\r\n" : "\r\n";
        if (auto [ec, n] = co_await net::async_write(stream, net::buffer(head), nothrow_awaitable);
            ec) {
            co_return false;
        }
        const auto created = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
        auto event = [&](const json& choice) {
            json chunk = {{"id", "cmpl-mock"},
                          {"object", chat ? "chat.completion.chunk" : "text_completion"},
                          {"created", created},
                          {"model", model},
                          {"system_fingerprint", opt.version},
                          {"choices", json::array({choice})}};
            return "data: " + chunk.dump() + "\n\n";
        };
        const double pace = tokens_per_second(req);
        const double gap = pace > 0 ? 1000.0 / pace : 0;
        co_await pause(ttft);
        for (std::uint32_t t = 0; t < tokens; ++t) {
            if (t > 0) {
                co_await pause(gap);
            }
            if ((cut || fail) && t == tokens / 2) {
                if (cut) {
                    boost::system::error_code ignored;
                    beast::get_lowest_layer(stream).socket().close(ignored);
                    co_return false;
                }
                const bool sent =
                    co_await write("data: {\"error\":{\"message\":\"injected stream failure\","
                                   "\"type\":\"server_error\",\"code\":\"mock_failure\"}}\n\n") &&
                    co_await write("");  // the last chunk: the body ends, without [DONE]
                co_return sent && !close;
            }
            const std::string token = t == 0 ? "answer" : " " + opt.version;
            json choice = {{"index", 0}, {"finish_reason", nullptr}};
            if (chat) {
                choice["delta"] = t == 0 ? json{{"role", "assistant"}, {"content", token}}
                                         : json{{"content", token}};
            } else {
                choice["text"] = token;
            }
            if (t + 1 == tokens) {
                choice["finish_reason"] = "stop";
            }
            if (!co_await write(event(choice))) {
                co_return false;
            }
        }
        if (usage) {
            json chunk = {{"id", "cmpl-mock"},
                          {"object", chat ? "chat.completion.chunk" : "text_completion"},
                          {"created", created},
                          {"model", model},
                          {"choices", json::array()},
                          {"usage",
                           {{"prompt_tokens", 3},
                            {"completion_tokens", tokens},
                            {"total_tokens", 3 + tokens}}}};
            if (!co_await write("data: " + chunk.dump() + "\n\n")) {
                co_return false;
            }
        }
        const bool ended = co_await write("data: [DONE]\n\n") && co_await write("");
        co_return ended && !close;
    }

    template <class Stream>
    net::awaitable<void> session(Stream stream) {
        auto& lowest = beast::get_lowest_layer(stream);
        if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
            lowest.expires_after(std::chrono::seconds(10));
            auto [ec] = co_await stream.async_handshake(net::ssl::stream_base::server,
                                                        nothrow_awaitable);
            if (ec) {
                co_return;
            }
        }
        beast::flat_buffer buffer;
        for (;;) {
            http::request_parser<http::string_body> parser;
            parser.body_limit(64 * 1024 * 1024);
            lowest.expires_after(std::chrono::seconds(120));
            auto [ec, n] = co_await http::async_read(stream, buffer, parser, nothrow_awaitable);
            if (ec) {
                break;
            }
            lowest.expires_never();
            requests.fetch_add(1, std::memory_order_relaxed);
            auto req = parser.release();
            std::string path(req.target().substr(0, req.target().find('?')));

            bool hang = req.count("X-Mock-Hang") || (opt.hang_rate > 0 && uniform() < opt.hang_rate);
            bool reset = req.count("X-Mock-Reset") || (opt.reset_rate > 0 && uniform() < opt.reset_rate);
            double delay = opt.latency_ms + static_cast<double>(header_number(req, "X-Mock-Delay-Ms"));
            if (opt.jitter_ms > 0) {
                delay += opt.jitter_ms * std::exp(opt.jitter_sigma * normal());
            }
            if (opt.tail_rate > 0 && uniform() < opt.tail_rate) {
                delay += opt.tail_ms;
            }
            if (hang) {
                delay = 3600.0 * 1000;
            }
            if (delay > 0) {
                net::steady_timer timer(stream.get_executor(),
                                        std::chrono::microseconds(static_cast<long>(delay * 1000)));
                co_await timer.async_wait(nothrow_awaitable);
            }
            if (reset) {
                boost::system::error_code ignored;
                lowest.socket().set_option(net::socket_base::linger(true, 0), ignored);
                lowest.socket().close(ignored);
                co_return;
            }
            unsigned status = static_cast<unsigned>(header_number(req, "X-Mock-Status"));
            double error_rate = opt.error_rate;
            if (opt.user_error_spread > 0) {
                if (auto user = req.find(opt.user_header); user != req.end()) {
                    error_rate = std::min(1.0, error_rate * user_error_propensity(user->value(),
                                                                            opt.user_error_spread));
                }
            }
            if (status == 0 && error_rate > 0 && uniform() < error_rate) {
                status = opt.error_status;
            }
            if (status < 400 && (path == "/v1/chat/completions" || path == "/v1/completions") &&
                req.method() == http::verb::post) {
                const json body = json::parse(req.body(), nullptr, false);
                if (body.is_object() && body.value("stream", false)) {
                    const bool close = req.count("X-Mock-Close") > 0 || !req.keep_alive();
                    if (!co_await stream_answer(stream, req, path, body, close)) {
                        break;
                    }
                    continue;
                }
            }
            http::response<http::string_body> res;
            res.version(11);
            res.set(http::field::server, "stagegate-mockmodel");
            res.set(http::field::content_type, "application/json");
            res.set("X-Mock-Version", opt.version);
            json out;
            if (path == "/healthz") {
                out = {{"status", "ok"}, {"version", opt.version}};
                res.result(http::status::ok);
            } else if (path == "/mock/stats") {
                out = {{"version", opt.version},
                       {"connections_accepted", accepted.load()},
                       {"requests", requests.load()}};
                res.result(http::status::ok);
            } else if (status >= 400) {
                res.result(status);
                out = {{"error", {{"code", "mock_failure"}, {"message", "injected failure"}}}};
            } else if (path == "/v1/models") {
                out = {{"object", "list"},
                       {"data",
                        {{{"id", "mock"}, {"object", "model"}, {"created", 0},
                          {"owned_by", "stagegate-mockmodel"}}}}};
                res.result(http::status::ok);
            } else if (path.rfind("/v1/models/", 0) == 0 || path.rfind("/v2/models/", 0) == 0 ||
                       path == "/v1/chat/completions" || path == "/v1/completions" ||
                       path == "/v1/embeddings" || path.rfind("/custom", 0) == 0) {
                out = predict(req, path);
                res.result(http::status::ok);
            } else {
                res.result(http::status::not_found);
                out = {{"error", {{"code", "not_found"}, {"message", "mock has no " + path}}}};
            }
            if (req.count("X-Mock-Echo")) {
                json headers = json::object();
                for (const auto& f : req) {
                    std::string name(f.name_string());
                    for (auto& c : name) {
                        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                    }
                    if (headers.contains(name)) {
                        headers[name] = headers[name].get<std::string>() + "\n" + std::string(f.value());
                    } else {
                        headers[name] = std::string(f.value());
                    }
                }
                out["received_headers"] = headers;
                out["received_body_bytes"] = req.body().size();
                out["received_target"] = std::string(req.target());
                out["received_method"] = std::string(req.method_string());
            }
            res.body() = out.dump();
            if (auto pad = header_number(req, "X-Mock-Body-Bytes"); pad > res.body().size()) {
                // Keep it JSON: pad inside a string field.
                std::string tail = R"(,"padding":")";
                auto fill = pad - res.body().size() - tail.size() - 1;
                res.body().pop_back();
                res.body() += tail + std::string(fill, 'x') + "\"}";
            }
            bool close = req.count("X-Mock-Close") > 0 || !req.keep_alive();
            res.keep_alive(!close);
            if (req.count("X-Mock-Garbage")) {
                // Not HTTP at all: the gateway must answer 502 and not reuse the connection.
                static constexpr std::string_view garbage = "SMTP READY\r\n\r\n";
                [[maybe_unused]] auto [gec, gn] = co_await net::async_write(
                    stream, net::buffer(garbage.data(), garbage.size()), nothrow_awaitable);
                break;
            }
            if (req.count("X-Mock-Truncate")) {
                // Promise more body than is sent, then close mid-body.
                std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                   "Content-Length: " +
                                   std::to_string(res.body().size() + 100) + "\r\n\r\n";
                std::array<net::const_buffer, 2> parts{net::buffer(head), net::buffer(res.body())};
                [[maybe_unused]] auto [tec, tn] = co_await net::async_write(stream, parts, nothrow_awaitable);
                break;
            }
            if (req.count("X-Mock-Overlong")) {
                // More bytes than Content-Length says, then the connection stays open: the
                // extra bytes must never reach a client, nor the connection be reused.
                std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                   "Content-Length: " +
                                   std::to_string(res.body().size()) + "\r\n\r\n";
                static constexpr std::string_view extra =
                    "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsmuggled!";
                std::array<net::const_buffer, 3> parts{net::buffer(head), net::buffer(res.body()),
                                                       net::buffer(extra.data(), extra.size())};
                auto [oec, on] = co_await net::async_write(stream, parts, nothrow_awaitable);
                if (oec) {
                    break;
                }
                continue;
            }
            if (req.count("X-Mock-Chunked")) {
                res.chunked(true);
            } else {
                res.prepare_payload();
            }
            if (req.method() == http::verb::head) {
                res.body().clear();
                res.content_length(0);
            }
            auto [wec, wn] = co_await http::async_write(stream, res, nothrow_awaitable);
            if (wec || close) {
                break;
            }
        }
        boost::system::error_code ignored;
        lowest.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }

    net::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, socket] = co_await acceptor.async_accept(net::make_strand(io), nothrow_awaitable);
            if (ec) {
                if (!acceptor.is_open()) {
                    co_return;
                }
                continue;
            }
            accepted.fetch_add(1, std::memory_order_relaxed);
            boost::system::error_code ignored;
            socket.set_option(tcp::no_delay(true), ignored);
            auto exec = socket.get_executor();
            if (tls) {
                net::co_spawn(exec,
                              session(beast::ssl_stream<beast::tcp_stream>(std::move(socket), *tls)),
                              net::detached);
            } else {
                net::co_spawn(exec, session(beast::tcp_stream(std::move(socket))), net::detached);
            }
        }
    }
};

server::server(options o) : impl_(std::make_unique<impl>()) {
    impl_->opt = std::move(o);
    impl_->rng.seed(impl_->opt.seed ? impl_->opt.seed : std::random_device{}());
}

server::~server() { stop(); }

result<void> server::start() {
    auto& i = *impl_;
    boost::system::error_code ec;
    auto address = net::ip::make_address(i.opt.address, ec);
    if (ec) {
        return error::make("bad_address", "invalid address " + i.opt.address);
    }
    if (!i.opt.cert_file.empty() || !i.opt.key_file.empty()) {
        auto ctx = tls_server_context(i.opt.cert_file, i.opt.key_file);
        if (!ctx) {
            return ctx.error();
        }
        i.tls = std::move(*ctx);
        if (!i.opt.client_ca_file.empty()) {
            i.tls->load_verify_file(i.opt.client_ca_file, ec);
            if (ec) {
                return error::make("tls_setup_failed",
                                   "cannot load the client CA file: " + ec.message());
            }
            i.tls->set_verify_mode(net::ssl::verify_peer | net::ssl::verify_fail_if_no_peer_cert);
        }
    }
    tcp::endpoint ep(address, i.opt.port);
    i.acceptor.open(ep.protocol(), ec);
    if (!ec) i.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) i.acceptor.bind(ep, ec);
    if (!ec) i.acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
        return error::make("bind_failed", "cannot listen on " + i.opt.address + ":" +
                                              std::to_string(i.opt.port) + ": " + ec.message());
    }
    i.port = i.acceptor.local_endpoint().port();
    net::co_spawn(i.acceptor.get_executor(), i.accept_loop(), net::detached);
    for (std::uint32_t t = 0; t < std::max(1u, i.opt.threads); ++t) {
        i.threads.emplace_back([&i] { i.io.run(); });
    }
    return {};
}

void server::stop() {
    auto& i = *impl_;
    if (i.threads.empty()) {
        return;
    }
    i.io.stop();
    for (auto& t : i.threads) {
        t.join();
    }
    i.threads.clear();
    // No thread runs now: the listener closes here (new connects are refused at once); open
    // connections close when the server is destroyed, as a killed process's would.
    boost::system::error_code ec;
    i.acceptor.close(ec);
}

std::uint16_t server::port() const { return impl_->port; }
std::uint64_t server::connections_accepted() const { return impl_->accepted.load(); }
std::uint64_t server::requests() const { return impl_->requests.load(); }

}  // namespace stagegate::mockmodel
