// The exchange core's non-template parts. See exchange.hpp.
#include "exchange.hpp"

namespace stagegate::proxy {

metrics::upstream_failure upstream_failure_of(const boost::system::error_code& ec,
                                              bool timed_out) {
    if (timed_out) {
        return metrics::upstream_failure::timeout;
    }
    const bool reset = ec == http::error::end_of_stream || ec == http::error::partial_message ||
                       ec == net::error::eof || ec == net::error::connection_reset ||
                       ec == net::error::broken_pipe;
    return reset ? metrics::upstream_failure::reset : metrics::upstream_failure::protocol;
}

void fail_before_response(exchange_outcome& out, const boost::system::error_code& ec,
                          bool timed_out, std::string_view what,
                          const routing::version_route& version,
                          const routing::upstream_endpoint& endpoint) {
    const auto kind = upstream_failure_of(ec, timed_out);
    out.result = exchange_result::failed_before_response;
    out.status = timed_out ? http::status::gateway_timeout : http::status::bad_gateway;
    out.problem.status = out.status;
    out.problem.code = timed_out ? "upstream_timeout"
                                 : (kind == metrics::upstream_failure::reset
                                        ? "upstream_reset"
                                        : "upstream_protocol_error");
    out.failure = kind;
    out.problem.message = std::string(what) + " version " + version.name + " at " +
                          endpoint.authority + ": " +
                          (timed_out ? std::string("timed out") : ec.message());
}

void read_tokens(exchange_outcome& out, relay_state& state,
                 std::optional<metrics::stream_outcome> ended) {
    if (state.watch) {
        out.stream_end = ended;
        const auto& t = state.watch->tokens();
        const bool usage = t.has_output_tokens();
        out.tokens = exchange_outcome::token_count{
            t.has_input_tokens() ? t.input_tokens() : 0,
            usage ? t.output_tokens() : state.watch->content_events(),
            usage ? metrics::token_source::usage : metrics::token_source::counted};
    } else if (state.usage_scan) {
        auto& scan = *state.usage_scan;
        scan.end_line();
        if (scan.has_output_tokens() || scan.has_input_tokens()) {
            out.tokens = exchange_outcome::token_count{
                scan.has_input_tokens() ? scan.input_tokens() : 0,
                scan.has_output_tokens() ? scan.output_tokens() : 0, metrics::token_source::usage};
        }
    }
}

body_progress parse_buffered_body(relay_reader& parser, beast::flat_buffer& buffer,
                                  boost::system::error_code& ec) {
    const std::size_t room = parser.buffer_left();
    while (buffer.size() > 0 && !parser.is_done()) {
        const auto used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if (ec == http::error::need_buffer) {
            ec = {};
            return body_progress::relay;
        }
        if (ec && ec != http::error::need_more) {
            return body_progress::relay;
        }
        const bool need_more = ec == http::error::need_more;
        ec = {};
        if (parser.buffer_left() < room) {
            return body_progress::relay;
        }
        if (need_more || used == 0) {
            break;
        }
    }
    return parser.is_done() ? body_progress::relay : body_progress::need_bytes;
}

bool make_room_for_body(beast::flat_buffer& buffer, const relay_reader& parser) {
    if (parser.is_done()) {
        return false;
    }
    auto length = parser.content_length();
    const bool large = length && *length > relay_buffer_size;
    if (!length || *length > buffer.capacity() - buffer.size()) {
        buffer.reserve(large ? large_relay_buffer_size : relay_buffer_size);
    }
    return large;
}

std::optional<acquire_problem> acquire_failure(const acquired& got,
                                               const routing::model_route& model,
                                               const routing::version_route& version) {
    if (got.status == acquire_status::ok) {
        return std::nullopt;
    }
    const bool no_healthy = got.status == acquire_status::no_healthy_upstream;
    acquire_problem p;
    p.problem.status = no_healthy ? http::status::service_unavailable : http::status::bad_gateway;
    p.problem.code = no_healthy ? "no_healthy_upstream" : "upstream_connect_failed";
    if (got.status == acquire_status::h2_not_negotiated) {
        p.problem.code = "upstream_h2_not_negotiated";  // a misconfigured backend: say so
    }
    p.problem.message = "model " + model.name + " version " + version.name + ": " + got.detail;
    if (!no_healthy) {
        p.failure = got.status == acquire_status::connect_timeout
                        ? metrics::upstream_failure::timeout
                        : metrics::upstream_failure::connect;
    }
    return p;
}

}  // namespace stagegate::proxy
