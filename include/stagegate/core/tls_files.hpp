// core/tls_files: loading a certificate chain and its key (PEM files) into a TLS context, and
// the server context every listener of this project starts from (the data plane's, the admin
// API's, the mock model's). Client certificates load the same way (backends, webhooks). What
// each adds on top (ALPN, a trust store, client verification) stays with it.
#pragma once

#include "stagegate/core/error.hpp"

#include <memory>
#include <optional>
#include <string>

namespace boost::asio::ssl {
class context;
}

namespace stagegate {

// Which file failed to load, and a message naming it and OpenSSL's reason (a key that does
// not match the certificate fails as the key).
struct tls_file_failure {
    bool key = false;  // the key file failed (else the certificate chain)
    std::string message;
};

std::optional<tls_file_failure> load_certificate_and_key(boost::asio::ssl::context& ctx,
                                                         const std::string& cert_file,
                                                         const std::string& key_file);

// A server context (TLS 1.2 and up) holding the chain and key; the error's code is
// "tls_setup_failed", its message load_certificate_and_key's.
result<std::shared_ptr<boost::asio::ssl::context>> tls_server_context(
    const std::string& cert_file, const std::string& key_file);

}  // namespace stagegate
