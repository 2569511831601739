// Two processes share a heap: a worker process fills a result table in a named shared-memory
// heap, and the parent reads it. The table is a std::vector whose allocator is
// memkit::shm_allocator (offset_ptr inside), found by name in the heap's directory; a counter
// is updated under the heap's process-shared robust mutex.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "memkit/vm/shm_heap.hpp"

namespace {

struct result {
    std::uint32_t job;
    std::uint32_t worker;
    std::uint64_t value;
};

using result_table = std::vector<result, memkit::shm_allocator<result>>;

std::uint64_t work(std::uint32_t job) { return std::uint64_t{job} * job + 7; }

} // namespace

int main() {
    const std::string name = "/memkit-example-" + std::to_string(::getpid());
    // remove_on_destroy: the segment's name goes away with the parent's handle.
    auto heap = memkit::shm_heap::create(name, 1 << 20, {.remove_on_destroy = true});
    auto* table =
        heap.find_or_construct<result_table>("results", memkit::shm_allocator<result>{heap});
    auto* done = heap.find_or_construct<std::uint64_t>("done", 0u);

    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return 1;
    if (pid == 0) { // the worker: the heap is mapped at the same address here
        for (std::uint32_t job = 0; job < 100; ++job) {
            std::scoped_lock lock{heap};
            table->push_back({job, 1, work(job)});
            ++*done;
        }
        ::_exit(0);
    }
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::printf("worker failed\n");
        return 1;
    }

    std::scoped_lock lock{heap};
    std::uint64_t sum = 0;
    bool ok = table->size() == 100 && *done == 100;
    for (const result& r : *table) {
        ok = ok && r.value == work(r.job) && r.worker == 1;
        sum += r.value;
    }
    const auto st = heap.stats();
    std::printf("segment %s: %zu results from the worker, sum %llu\n", name.c_str(), table->size(),
                static_cast<unsigned long long>(sum));
    std::printf("heap: %zu bytes in use, %zu named objects, %llu dead lock owners\n",
                st.bytes_in_use, heap.named_count(),
                static_cast<unsigned long long>(heap.owner_deaths()));
    std::printf("%s\n", ok ? "ok" : "MISMATCH");
    heap.destroy<result_table>("results");
    return ok ? 0 : 1;
}
