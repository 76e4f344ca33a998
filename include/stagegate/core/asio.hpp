// core/asio: the completion token every coroutine here awaits Asio with. Owns that one
// spelling; Asio's own headers only (no Beast: it is header-heavy and this header is included
// across modules), no I/O, no executor of its own.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace stagegate {

// `co_await op(..., nothrow_awaitable)` yields (error_code, results...) instead of throwing:
// a peer gone or a timeout is an ordinary outcome here, not an exception across co_await.
// The executor must be the awaiting coroutine's own: the data plane runs on the concrete
// io_context::executor_type (no type erasure per operation) and names it, the control side
// runs on the default any_io_executor.
template <class Executor = boost::asio::any_io_executor>
inline constexpr auto nothrow_awaitable_on =
    boost::asio::as_tuple(boost::asio::use_awaitable_t<Executor>{});

// For coroutines of type boost::asio::awaitable<T> (the default executor).
inline constexpr auto nothrow_awaitable = nothrow_awaitable_on<>;

}  // namespace stagegate
