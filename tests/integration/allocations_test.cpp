// Heap allocations on the request path (#24): a gateway in-process in front of in-process mock
// versions, a few thousand keep-alive requests after a warm-up, and the allocations the
// gateway's worker thread made meanwhile, counted exactly (no timing): zero.
//
// Its own binary: it replaces the C allocator (malloc and its family, where operator new ends
// and where Asio gets its coroutine frames, by aligned_alloc) with a counting front to glibc's,
// which the other integration tests need not pay for.
// Counts are per thread; the worker is found by the name data_plane gives its threads
// ("stagegate-w0"). Sanitizer builds leave this binary out: their runtimes own malloc.
#include "support/stack.hpp"

#include <gtest/gtest.h>

#include <boost/asio/post.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

// --- Counting allocator ---------------------------------------------------------------------
// Each thread counts in a slot of a fixed array, claimed at its first allocation (a plain
// thread_local pointer: nothing that could allocate itself), and keeps its last sizes for the
// failure message. Only the owning thread writes a slot; the test reads it.

namespace {

struct thread_allocations {
    std::atomic<pid_t> tid{0};
    std::atomic<std::uint64_t> count{0};
    std::array<std::atomic<std::size_t>, 64> last_sizes{};
};

constexpr std::size_t max_threads = 512;
thread_allocations registry[max_threads];
thread_allocations overflow;  // threads past max_threads share it (never the worker: see find)
std::atomic<std::size_t> registered{0};
thread_local thread_allocations* mine = nullptr;

void count_allocation(std::size_t size) {
    if (mine == nullptr) {
        const auto i = registered.fetch_add(1, std::memory_order_relaxed);
        mine = i < max_threads ? &registry[i] : &overflow;
        mine->tid.store(::gettid(), std::memory_order_relaxed);
    }
    const auto n = mine->count.load(std::memory_order_relaxed);
    mine->last_sizes[n % mine->last_sizes.size()].store(size, std::memory_order_relaxed);
    mine->count.store(n + 1, std::memory_order_release);
}

}  // namespace

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void* __libc_valloc(std::size_t);
void* __libc_pvalloc(std::size_t);
void __libc_free(void*);

// glibc's rule for replacing malloc: malloc, free, calloc and realloc, plus the aligned family
// the program uses. The memory is glibc's own, so malloc_usable_size stays right.
void* malloc(std::size_t size) {
    count_allocation(size);
    return __libc_malloc(size);
}
void free(void* p) {
    __libc_free(p);
}
void* calloc(std::size_t n, std::size_t size) {
    count_allocation(n * size);
    return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t size) {
    count_allocation(size);
    return __libc_realloc(p, size);
}
void* memalign(std::size_t align, std::size_t size) {
    count_allocation(size);
    return __libc_memalign(align, size);
}
void* aligned_alloc(std::size_t align, std::size_t size) {
    count_allocation(size);
    return __libc_memalign(align, size);
}
int posix_memalign(void** out, std::size_t align, std::size_t size) {
    if (align < sizeof(void*) || (align & (align - 1)) != 0) {
        return EINVAL;
    }
    count_allocation(size);
    void* p = __libc_memalign(align, size);
    if (p == nullptr) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}
void* valloc(std::size_t size) {
    count_allocation(size);
    return __libc_valloc(size);
}
void* pvalloc(std::size_t size) {
    count_allocation(size);
    return __libc_pvalloc(size);
}
}

namespace stagegate::test {
namespace {

// The slot of the live thread named `name` (the latest one: a thread id may be reused).
thread_allocations* find_thread(std::string_view name) {
    thread_allocations* found = nullptr;
    const auto n = std::min(registered.load(), max_threads);
    for (std::size_t i = 0; i < n; ++i) {
        const auto tid = registry[i].tid.load();
        std::ifstream comm("/proc/self/task/" + std::to_string(tid) + "/comm");
        std::string got;
        if (std::getline(comm, got) && got == name) {
            found = &registry[i];
        }
    }
    return found;
}

// The sizes of the slot's allocations numbered [from, to), by size (the latest 64 at most).
std::string sizes_between(const thread_allocations& t, std::uint64_t from, std::uint64_t to) {
    std::map<std::size_t, unsigned> by_size;
    for (auto i = std::max(from, to > t.last_sizes.size() ? to - t.last_sizes.size() : 0); i < to;
         ++i) {
        ++by_size[t.last_sizes[i % t.last_sizes.size()].load()];
    }
    std::string out;
    for (const auto& [size, times] : by_size) {
        out += std::to_string(size) + " B x" + std::to_string(times) + ", ";
    }
    return out;
}

// One keep-alive connection with a blocking socket; the request bytes and the read buffer
// are made once, so the client's own allocations stay out of the way (not that they count:
// they are on the test's thread).
class raw_client {
public:
    explicit raw_client(std::uint16_t port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        timeval tv{10, 0};  // bounds a failure; never a wait of its own
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
        buffer_.resize(64 * 1024);
    }
    ~raw_client() { ::close(fd_); }
    raw_client(const raw_client&) = delete;
    raw_client& operator=(const raw_client&) = delete;
    bool connected() const { return connected_; }

    bool send(std::string_view request) {
        for (std::size_t sent = 0; sent < request.size();) {
            const auto n = ::send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) {
                return false;
            }
            sent += static_cast<std::size_t>(n);
        }
        return true;
    }

    // Reads one answer with a Content-Length body; its head, or empty on any failure.
    std::string_view read_answer() {
        std::size_t have = 0;
        std::size_t head_end = std::string_view::npos;
        std::size_t total = 0;
        for (;;) {
            if (have == buffer_.size()) {
                return {};
            }
            const auto n = ::recv(fd_, buffer_.data() + have, buffer_.size() - have, 0);
            if (n <= 0) {
                return {};
            }
            have += static_cast<std::size_t>(n);
            const std::string_view got(buffer_.data(), have);
            if (head_end == std::string_view::npos) {
                head_end = got.find("\r\n\r\n");
                if (head_end == std::string_view::npos) {
                    continue;
                }
                head_end += 4;
                const auto head = got.substr(0, head_end);
                const auto at = head.find("\r\nContent-Length: ");
                if (at == std::string_view::npos) {
                    return {};
                }
                const auto digits = head.substr(at + 18);
                std::size_t length = 0;
                std::from_chars(digits.data(), digits.data() + digits.size(), length);
                total = head_end + length;
            }
            if (have >= total) {
                return have == total ? got.substr(0, head_end) : std::string_view{};
            }
        }
    }

private:
    int fd_ = -1;
    bool connected_ = false;
    std::string buffer_;
};

std::string predict_request(std::string_view user) {
    const std::string body = R"({"instances":[[1,2]]})";
    return "POST /v1/models/m:predict HTTP/1.1\r\nHost: gw\r\nX-User: " + std::string(user) +
           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
}

// Holds the gateway's control thread while it lives. Once a second that thread has every
// worker hand over its metric shard (a posted task that builds vectors on the worker's thread):
// the worker's own periodic work, not a request's, which would land in the count or not
// depending on how long the requests took.
class control_paused {
public:
    explicit control_paused(boost::asio::io_context& control) {
        auto is_in = entered_.get_future();
        boost::asio::post(control, [this, go = release_.get_future()] {
            entered_.set_value();
            go.wait();
        });
        ok_ = is_in.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    }
    ~control_paused() { release_.set_value(); }
    control_paused(const control_paused&) = delete;
    control_paused& operator=(const control_paused&) = delete;
    bool ok() const { return ok_; }

private:
    std::promise<void> entered_;
    std::promise<void> release_;
    bool ok_ = false;
};

// Sends the next `rounds` x clients.size() requests of `requests` (from `next` on): each round
// sends one on every connection, then reads each answer, so that with `all_at_once` as many
// requests as connections are in flight on the worker at once, and one otherwise. Counts the
// answers from each version into `versions` when given. False on any answer but a 200.
bool run_rounds(std::vector<std::unique_ptr<raw_client>>& clients,
                const std::vector<std::string>& requests, std::size_t& next, int rounds,
                bool all_at_once, std::map<std::string, unsigned>* versions = nullptr) {
    const auto answered = [&](raw_client& c) {
        const auto head = c.read_answer();
        if (head.rfind("HTTP/1.1 200 ", 0) != 0) {
            return false;
        }
        if (versions) {
            const bool candidate = head.find("\r\nX-Stagegate-Version: v2\r\n") != head.npos;
            ++(*versions)[candidate ? "v2" : "v1"];
        }
        return true;
    };
    for (int r = 0; r < rounds; ++r) {
        for (auto& c : clients) {
            if (!c->send(requests[next++ % requests.size()]) || (!all_at_once && !answered(*c))) {
                return false;
            }
        }
        for (auto& c : clients) {
            if (all_at_once && !answered(*c)) {
                return false;
            }
        }
    }
    return true;
}

// Request read, routing (a sticky split), the pooled upstream write, the relay and the metrics
// record over `connections` keep-alive connections: after a warm-up, a window of 3,072 requests
// in which the worker's thread allocated nothing at all. With several requests in flight, a
// pool may still grow to a new high-water mark after the warm-up (one more relay buffer, when
// four answers happen to be relayed at once for the first time): once, not per request, and
// when is a matter of timing. So such a test looks at up to `windows` windows in a row and
// asserts that one of them allocated nothing, which no allocation per request, or per few
// thousand requests, can pass.
void expect_no_allocations(std::size_t connections, bool all_at_once, int windows) {
    auto s = stack::make(5000, 1);
    ASSERT_NE(s.port, 0);
    const control_paused paused(s.gateway->control());
    ASSERT_TRUE(paused.ok());
    // Users on both versions of the split.
    std::vector<std::string> requests;
    for (int u = 0; u < 64; ++u) {
        requests.push_back(predict_request("user-" + std::to_string(u)));
    }
    std::vector<std::unique_ptr<raw_client>> clients;
    for (std::size_t i = 0; i < connections; ++i) {
        clients.push_back(std::make_unique<raw_client>(s.port));
        ASSERT_TRUE(clients.back()->connected());
    }
    // The warm-up goes through the users' sequence some times over (a multiple of the rounds'
    // size), so the measured rounds put no request mix in flight that it has not.
    std::size_t next = 0;
    std::map<std::string, unsigned> versions;
    ASSERT_TRUE(run_rounds(clients, requests, next, static_cast<int>(512 / connections),
                           all_at_once, &versions));
    ASSERT_GT(versions["v1"], 0u);
    ASSERT_GT(versions["v2"], 0u);  // both versions' connections are pooled and warm

    const auto* worker = find_thread("stagegate-w0");
    ASSERT_NE(worker, nullptr);
    const int rounds = static_cast<int>(3072 / connections);
    std::string seen;  // each window's allocations, for the failure message
    for (int window = 0; window < windows; ++window) {
        // (The last requests before may still be finishing their bookkeeping: they count too.)
        const auto before = worker->count.load(std::memory_order_acquire);
        ASSERT_TRUE(run_rounds(clients, requests, next, rounds, all_at_once));
        // The last answers were written before their requests' bookkeeping ended: one more
        // round makes sure that finished too (it is counted, and must allocate nothing either).
        ASSERT_TRUE(run_rounds(clients, requests, next, 1, all_at_once));
        const auto after = worker->count.load(std::memory_order_acquire);
        if (after == before) {
            return;
        }
        seen += "\n  " + std::to_string(after - before) + " over " +
                std::to_string((rounds + 1) * connections) +
                " requests; the latest by size: " + sizes_between(*worker, before, after);
    }
    ADD_FAILURE() << "allocations on the worker in each window:" << seen;
}

// One request at a time, two connections taking turns: the coroutine frames of a request
// (handle_request, exchange) are small enough for Asio to recycle. Nothing grows after the
// warm-up here: the first window must be clean. (It was not in one run of ten or so, until
// the worker filled Asio's operation cache at start: data_plane.cpp, fill_operation_cache.)
TEST(Allocations, KeepAliveProxyingAllocatesNothingOnTheWorker) {
    expect_no_allocations(2, false, 1);
}

// Four requests in flight at once: Asio's per-thread cache (BOOST_ASIO_RECYCLING_ALLOCATOR_
// CACHE_SIZE, CMakeLists.txt) holds the frames of all of them.
TEST(Allocations, FourRequestsInFlightAllocateNothingOnTheWorker) {
    expect_no_allocations(4, true, 3);
}

}  // namespace
}  // namespace stagegate::test
