#include "stagegate/core/tls_files.hpp"

#include <boost/asio/ssl/context.hpp>

namespace stagegate {

namespace ssl = boost::asio::ssl;

std::optional<tls_file_failure> load_certificate_and_key(ssl::context& ctx,
                                                         const std::string& cert_file,
                                                         const std::string& key_file) {
    boost::system::error_code ec;
    ctx.use_certificate_chain_file(cert_file, ec);
    if (ec) {
        return tls_file_failure{false,
                                "cannot load the certificate " + cert_file + ": " + ec.message()};
    }
    ctx.use_private_key_file(key_file, ssl::context::pem, ec);
    if (ec) {
        return tls_file_failure{true, "cannot load the key " + key_file + ": " + ec.message()};
    }
    return std::nullopt;
}

result<std::shared_ptr<ssl::context>> tls_server_context(const std::string& cert_file,
                                                         const std::string& key_file) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    boost::system::error_code ec;
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                         ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                         ssl::context::no_tlsv1_1,
                     ec);
    if (ec) {
        return error::make("tls_setup_failed", "cannot set TLS options: " + ec.message());
    }
    if (auto failed = load_certificate_and_key(*ctx, cert_file, key_file)) {
        return error::make("tls_setup_failed", std::move(failed->message));
    }
    return ctx;
}

}  // namespace stagegate
