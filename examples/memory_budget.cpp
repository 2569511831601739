// Per-user and per-request memory budgets in a server, and the machine's memory pressure.
//
// A query server gives the whole process 64 MiB (a soft limit at 48 MiB asks caches to shrink),
// each user 40 MiB and each request 16 MiB. Budgets form a tree - request -> user -> server - so
// a request's bytes count at all three levels, and a request is refused by whichever level would
// overflow first; the error names that level. A request's data lives in std::pmr containers whose
// memory resource charges the request's budget. At the end the system pressure monitor says how
// close this machine (or container) is to its own limit, and which files it could not read.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory_resource>
#include <new>
#include <string>
#include <vector>

#include <memkit/alloc/system.hpp>
#include <memkit/compose/budgeted.hpp>
#include <memkit/heap/memory_budget.hpp>
#include <memkit/heap/system_pressure_monitor.hpp>
#include <memkit/pmr/resource.hpp>

namespace {

constexpr std::size_t MiB = std::size_t{1} << 20;
constexpr std::size_t none = memkit::memory_budget::unlimited;

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "memory_budget: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

// One request: a budget under its user's, and a memory resource that charges it.
struct request {
    using heap = memkit::budgeted<memkit::system_allocator, memkit::budget_handle>;

    memkit::memory_budget budget;
    memkit::resource<heap> memory;

    request(memkit::memory_budget& user, const std::string& name)
        : budget{user, 16 * MiB, none, name}, memory{memkit::budget_handle{budget},
                                                     memkit::system_allocator{}} {}
};

// Reserves `bytes` for the request's working set; prints who refused, if anyone did.
bool run(request& r, std::size_t bytes) {
    try {
        r.budget.reserve(bytes);
        std::printf("%-14s reserved %2zu MiB\n", r.budget.name().c_str(), bytes / MiB);
        return true;
    } catch (const memkit::memory_budget_exceeded& e) {
        std::printf("%-14s refused: %s\n", r.budget.name().c_str(), e.what());
        return false;
    }
}

} // namespace

int main() {
    memkit::memory_budget server{64 * MiB, 48 * MiB, "server"};
    memkit::memory_budget alice{server, 40 * MiB, none, "user alice"};
    memkit::memory_budget bob{server, 40 * MiB, none, "user bob"};
    int soft_reports = 0;
    server.on_soft_limit([&](const memkit::soft_limit_event& e) {
        ++soft_reports;
        std::printf("  server: soft limit reached (%zu MiB used): shrink the caches\n",
                    e.used / MiB);
    });
    server.on_level_change([](const memkit::budget_level_event& e) {
        std::printf("  server: pressure %s -> %s\n", std::string(to_string(e.from)).c_str(),
                    std::string(to_string(e.to)).c_str());
    });

    {
        request a1{alice, "alice/req-1"}, a2{alice, "alice/req-2"}, a3{alice, "alice/req-3"};
        request b4{bob, "bob/req-4"}, b5{bob, "bob/req-5"}, b6{bob, "bob/req-6"};

        // Request data in a pmr container: its bytes count in the request, the user and the
        // server.
        std::pmr::vector<char> rows{&a1.memory};
        rows.resize(2 * MiB);
        require(a1.budget.used() == 2 * MiB && server.used() == 2 * MiB, "pmr bytes counted");

        require(run(a1, 10 * MiB), "alice/req-1 fits");
        require(run(a2, 12 * MiB), "alice/req-2 fits");
        require(!run(a3, 20 * MiB), "alice/req-3 is over its own 16 MiB");
        require(run(b4, 16 * MiB), "bob/req-4 fits");
        require(run(b5, 16 * MiB), "bob/req-5 fits (and passes the soft limit)");
        require(!run(b6, 16 * MiB), "bob/req-6 is over bob's 40 MiB");
        require(!run(a3, 12 * MiB), "alice/req-3 is over the server's 64 MiB");
        require(soft_reports == 1, "one soft-limit report");
        require(server.used() == 56 * MiB && alice.used() == 24 * MiB && bob.used() == 32 * MiB,
                "usage at every level");
        require(server.level() == memkit::pressure_level::high, "56 of 64 MiB is high");

        // A container that grows past its request's budget gets a std::bad_alloc.
        try {
            rows.resize(8 * MiB);
            require(false, "the vector should not have grown");
        } catch (const std::bad_alloc& e) {
            std::printf("%-14s pmr vector refused: %s\n", "alice/req-1", e.what());
        }

        // Requests finish: each gives back what it reserved.
        a1.budget.release(10 * MiB);
        a2.budget.release(12 * MiB);
        b4.budget.release(16 * MiB);
        b5.budget.release(16 * MiB);
    } // the vector and the requests are gone: their memory is back
    require(server.used() == 0 && alice.used() == 0 && bob.used() == 0, "all released");
    std::printf("server peak %zu MiB of %zu MiB\n\n", server.peak() / MiB,
                server.hard_limit() / MiB);

    const memkit::system_pressure_monitor monitor;
    const memkit::memory_sample s = monitor.sample();
    std::printf("system memory pressure:\n%s", memkit::to_string(s).c_str());
    require(!s.read.empty() || !s.unavailable.empty(), "the monitor says what it read");
    return EXIT_SUCCESS;
}
