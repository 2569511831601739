// Many small objects of many sizes on a slab allocator.
//
// A message broker keeps, per client, a few small records of different sizes: a session, its
// subscriptions, a queue of pending messages. A slab allocator gives each size class its own
// cache of page-sized slabs, so allocation and free are a pop and a push on one slab's free
// list, objects of one size sit together, and a slab that empties goes back to the system
// (beyond one kept per cache for the next burst). Through memkit::resource, std::pmr containers
// use it directly; requests above the largest class are refused, so a container that grows
// large belongs on a general-purpose heap.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <map>
#include <memory_resource>
#include <vector>

#include <memkit/alloc/slab.hpp>
#include <memkit/pmr/resource.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "slab: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct message {
    int id;
    char payload[52];
};

} // namespace

int main() {
    memkit::slab_allocator slabs{{.slab_size = 4096, .retained_empty = 1}};
    memkit::resource r{slabs};

    {
        // Per client: a map entry (the session), a list of subscriptions and a list of messages.
        std::pmr::map<int, std::pmr::list<int>> subscriptions{&r};
        std::pmr::list<message> queue{&r};
        for (int client = 0; client < 2000; ++client) {
            auto& topics = subscriptions[client];
            for (int t = 0; t < client % 5; ++t) topics.push_back(t);
            queue.push_back(message{client, {}});
        }
        const auto st = slabs.stats();
        std::printf("%zu live objects, %zu bytes in use, %zu slabs (%zu bytes)\n",
                    static_cast<std::size_t>(st.allocations - st.deallocations), st.bytes_in_use,
                    slabs.slab_count(), st.capacity);
        for (std::size_t i = 0; i < slabs.class_count(); ++i) {
            const memkit::slab_cache_stats c = slabs.cache_stats(i);
            if (c.objects_in_use == 0) continue;
            std::printf("  class %4zu B: %5zu objects, %3zu full + %zu partial slabs of %zu\n",
                        c.object_size, c.objects_in_use, c.full_slabs, c.partial_slabs,
                        c.objects_per_slab);
        }
        require(subscriptions.size() == 2000 && queue.size() == 2000, "containers are complete");
        require(slabs.stats().bytes_in_use > 2000 * sizeof(message), "nodes live in the slabs");

        // A burst of messages comes and goes: slabs are taken, then all but one go back.
        const std::size_t before = slabs.slab_count();
        std::pmr::list<message> burst{&r};
        for (int i = 0; i < 10000; ++i) burst.push_back(message{i, {}});
        require(slabs.slab_count() > before, "the burst needed more slabs");
        burst.clear();
        require(slabs.slab_count() <= before + 1, "emptied slabs went back but one");

        // Large requests are refused: a vector of 1000 ints needs 4000 contiguous bytes.
        std::pmr::vector<int> big{&r};
        bool refused = false;
        try {
            big.reserve(1000);
        } catch (const memkit::bad_size&) {
            refused = true;
        }
        require(refused, "requests above the largest class are refused with bad_size");
    }

    require(slabs.stats().bytes_in_use == 0, "every object came back");
    slabs.validate();
    slabs.shrink_to_fit();
    require(slabs.slab_count() == 0, "shrink_to_fit returned the retained slabs");
    std::puts("slab: ok");
    return 0;
}
