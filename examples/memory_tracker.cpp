// Finding a leak with memkit::memory_tracker.
//
// A small HTTP-like server parses requests into a std::pmr container and keeps a per-request
// scratch buffer. One code path (requests with a body) forgets to free its buffer. Every request
// runs inside a scoped_tracker, so the server notices the request that leaked, and the tracker's
// report says where the block was allocated, with the call stack.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory_resource>
#include <string>
#include <string_view>
#include <vector>

#include <memkit/alloc/system.hpp>
#include <memkit/debug/memory_tracker.hpp>
#include <memkit/pmr/resource.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "memory_tracker: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

using heap = memkit::tracked<memkit::system_allocator>;

struct server {
    explicit server(memkit::memory_tracker& t) : scratch(t), resource(t) {}

    heap scratch;                    // raw buffers, recorded with their call sites
    memkit::resource<heap> resource; // std::pmr containers, recorded too

    // Returns the number of header lines; requests with a body leak their body buffer.
    MEMKIT_NOINLINE std::size_t handle(std::string_view request) {
        std::pmr::vector<std::pmr::string> headers{&resource};
        std::size_t start = 0;
        while (start < request.size()) {
            const std::size_t end = std::min(request.find('\n', start), request.size());
            headers.emplace_back(request.substr(start, end - start));
            start = end + 1;
        }
        char* line_buffer = static_cast<char*>(MEMKIT_TRACK(scratch, 256));
        std::memcpy(line_buffer, request.data(), std::min<std::size_t>(request.size(), 255));
        scratch.deallocate(line_buffer, 256);
        if (request.find("Content-Length") != std::string_view::npos) {
            void* body = scratch.allocate(4096, 64, "request body");
            std::memset(body, 0, 4096);
            // BUG: the body buffer is never freed.
        }
        return headers.size();
    }
};

} // namespace

int main() {
    memkit::memory_tracker tracker{{.capture_stacks = true, .name = "server heap"}};
    server srv{tracker};

    const std::vector<std::string> requests{
        "GET /index.html HTTP/1.1\nHost: example.org\nAccept: text/html",
        "POST /upload HTTP/1.1\nHost: example.org\nContent-Length: 4096",
        "GET /style.css HTTP/1.1\nHost: example.org",
    };
    std::size_t leaking_requests = 0;
    for (const std::string& r : requests) {
        memkit::scoped_tracker scope{tracker};
        const std::size_t lines = srv.handle(r);
        const std::string first_line = r.substr(0, r.find('\n'));
        std::printf("%-26s %zu lines, %llu allocations, peak %zu bytes, leaked %zu bytes\n",
                    first_line.c_str(), lines, static_cast<unsigned long long>(scope.allocations()),
                    scope.peak_bytes(), scope.leaked_bytes());
        if (scope.leaked_blocks() != 0) ++leaking_requests;
    }
    require(leaking_requests == 1, "exactly one request leaks");

    // Where the leak comes from: the call site, the type name and the stack.
    memkit::report_options opts;
    opts.symbols.use_addr2line = false; // names from the symbol table suffice here; fast
    std::cout << '\n' << tracker.report(opts);

    const auto leaks = tracker.find_leaks();
    require(leaks.size() == 1 && leaks[0].size == 4096, "one 4096-byte leak");
    require(std::string_view(leaks[0].type_name) == "request body", "type name recorded");
    require(!leaks[0].stack.empty(), "stack captured");
    srv.scratch.deallocate(const_cast<void*>(leaks[0].pointer), 4096, 64);
    require(tracker.stats().current_blocks == 0, "no leaks after the fix");
    return 0;
}
