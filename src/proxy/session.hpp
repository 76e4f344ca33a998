// Private to proxy: client connections. A session reads requests off one downstream
// connection, routes each, forwards it and relays the answer, until the connection closes.
#pragma once

#include "stagegate/proxy/worker.hpp"

#include <string>

namespace stagegate::proxy {

// Runs a session on an accepted socket (TLS when `tls` is not null) on the worker's thread.
void start_client_session(worker& w, socket_type socket, boost::asio::ssl::context* tls,
                          std::string client_address);

// Answers 503 "overloaded" and closes: the worker is at its connection limit or draining.
void shed_connection(worker& w, socket_type socket);

}  // namespace stagegate::proxy
