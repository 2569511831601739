// Concurrency tests of memkit::region_store (include/memkit/vm/region_store.hpp), meant to run
// under ThreadSanitizer as well: the region lock's writer preference, N readers and one writer on
// the same region (every read sees a whole write, never a torn one, and the values a reader sees
// never go back), writers of different regions at once, and flush() running while readers and a
// writer are busy, after which the file reopens with every checksum valid.
#include "memkit/vm/region_store.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using memkit::region_layout;
using memkit::region_store;

constexpr int reader_count = 4;
constexpr int writes = 1500;
constexpr std::size_t hot_size = 4096;

// "r0", "r1", ... (appending instead of `"r" + std::to_string(i)`, which trips GCC 12's
// -Wrestrict false positive at -O2).
std::string region_name(int i) {
    std::string n = "r";
    n += std::to_string(i);
    return n;
}

// Fills the whole region with the value `k` while holding the exclusive lock.
void write_all(region_store& s, memkit::region_id id, unsigned k) {
    auto w = s.write(id);
    std::fill(w.bytes().begin(), w.bytes().end(), static_cast<std::byte>(k & 0xffu));
}

// Reads until `stop`, checking that every snapshot is uniform (not torn) and that the values
// never decrease (writes are ordered by the lock). Returns the number of reads.
std::size_t read_until(const region_store& s, memkit::region_id id, const std::atomic<bool>& stop,
                       std::atomic<int>& failures) {
    std::size_t reads = 0;
    unsigned last = 0;
    do {
        auto r = s.read(id);
        const auto bytes = r.bytes();
        const std::byte first = bytes.front();
        if (!std::all_of(bytes.begin(), bytes.end(), [&](std::byte b) { return b == first; }))
            failures.fetch_add(1, std::memory_order_relaxed);
        const auto v = static_cast<unsigned>(first);
        if (v < last) failures.fetch_add(1, std::memory_order_relaxed);
        last = v;
        ++reads;
    } while (!stop.load(std::memory_order_acquire));
    return reads;
}

// The region lock prefers writers: once a writer waits, new readers are turned away, so readers
// that keep the region busy cannot starve it (std::shared_mutex on glibc lets them).
TEST(region_store_concurrency, a_waiting_writer_holds_off_new_readers) {
    memkit::detail::region_lock lock;
    lock.lock_shared();
    std::atomic<bool> written{false};
    std::thread writer([&] {
        lock.lock();
        written.store(true);
        lock.unlock();
    });
    bool turned_away = false;
    for (int i = 0; i < 10'000'000 && !turned_away; ++i) {
        if (lock.try_lock_shared()) {
            lock.unlock_shared();
            std::this_thread::yield();
        } else {
            turned_away = true;
        }
    }
    EXPECT_TRUE(turned_away) << "the writer never got queued";
    EXPECT_FALSE(written.load()) << "the writer got in while a reader held the lock";
    lock.unlock_shared();
    writer.join();
    EXPECT_TRUE(written.load());
    EXPECT_TRUE(lock.try_lock());
    EXPECT_FALSE(lock.try_lock_shared());
    lock.unlock();
    EXPECT_TRUE(lock.try_lock_shared());
    EXPECT_FALSE(lock.try_lock());
    lock.unlock_shared();
}

TEST(region_store_concurrency, readers_never_see_a_torn_write) {
    region_store s = region_store::anonymous(region_layout{{"hot", hot_size}, {"cold", 64}});
    s.activate();
    const auto hot = s.find("hot");
    std::atomic<bool> stop{false};
    std::atomic<int> failures{0};
    std::vector<std::size_t> reads(reader_count);
    std::vector<std::thread> readers;
    for (int i = 0; i < reader_count; ++i)
        readers.emplace_back([&, i] { reads[i] = read_until(s, hot, stop, failures); });
    // Values rise to 255 and stay there, so a reader that ever sees one go down saw a stale
    // or torn snapshot.
    for (int k = 1; k <= writes; ++k) write_all(s, hot, static_cast<unsigned>(std::min(k, 255)));
    stop.store(true, std::memory_order_release);
    for (auto& t : readers) t.join();
    EXPECT_EQ(failures.load(), 0);
    for (std::size_t n : reads) EXPECT_GT(n, 0u);
    auto r = s.read(hot);
    EXPECT_EQ(r.bytes().back(), std::byte{255});
}

TEST(region_store_concurrency, writers_of_different_regions_run_together) {
    constexpr int regions = 4;
    region_layout layout;
    for (int i = 0; i < regions; ++i) layout.add(region_name(i), 1024);
    region_store s = region_store::anonymous(layout);
    s.activate();
    std::vector<std::thread> writers;
    for (int i = 0; i < regions; ++i)
        writers.emplace_back([&, i] {
            const std::string name = region_name(i);
            std::vector<std::byte> chunk(16);
            for (int k = 0; k < 2000; ++k) {
                const std::size_t slot = static_cast<std::size_t>(k) % 64;
                std::fill(chunk.begin(), chunk.end(), static_cast<std::byte>(i + 1));
                s.write(name, slot * chunk.size(), chunk);
            }
        });
    for (auto& t : writers) t.join();
    for (int i = 0; i < regions; ++i) {
        auto r = s.read(region_name(i));
        EXPECT_TRUE(std::all_of(r.bytes().begin(), r.bytes().end(),
                                [&](std::byte b) { return b == static_cast<std::byte>(i + 1); }));
    }
    EXPECT_EQ(s.stats().dirty_regions, static_cast<std::size_t>(regions));
}

TEST(region_store_concurrency, flush_runs_beside_readers_and_a_writer) {
    const fs::path dir =
        fs::temp_directory_path() / ("memkit_region_store_conc_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const fs::path p = dir / "store.mks";
    fs::remove(p);
    {
        region_store s = region_store::create(p, region_layout{{"hot", hot_size}, {"log", 8192}});
        s.activate();
        const auto hot = s.find("hot");
        std::atomic<bool> stop{false};
        std::atomic<int> failures{0};
        std::vector<std::thread> threads;
        for (int i = 0; i < 2; ++i)
            threads.emplace_back([&] { (void)read_until(s, hot, stop, failures); });
        std::atomic<int> flushes{0};
        threads.emplace_back([&] {
            // Each flush msyncs, which is slow; a few dozen are enough to interleave.
            while (!stop.load(std::memory_order_acquire) && flushes.load() < 40) {
                s.flush();
                flushes.fetch_add(1);
            }
        });
        // The lock prefers writers, so a writer that never pauses would hold the flusher off:
        // yield between writes, and keep writing until a few flushes have interleaved.
        for (int k = 1; k <= 255 || flushes.load() < 5; ++k) {
            write_all(s, hot, static_cast<unsigned>(std::min(k, 255)));
            s.write("log", static_cast<std::size_t>(k % 1024) * 8,
                    std::vector<std::byte>(8, std::byte{1}));
            std::this_thread::yield();
        }
        stop.store(true, std::memory_order_release);
        for (auto& t : threads) t.join();
        EXPECT_EQ(failures.load(), 0);
        EXPECT_GT(flushes.load(), 0);
        s.flush();
        EXPECT_EQ(s.stats().dirty_regions, 0u);
    }
    region_store s = region_store::open(p, region_layout{{"hot", hot_size}, {"log", 8192}});
    s.activate();
    auto r = s.read("hot");
    EXPECT_TRUE(std::all_of(r.bytes().begin(), r.bytes().end(),
                            [](std::byte b) { return b == std::byte{255}; }));
    r.unlock();
    s.close();
    fs::remove_all(dir);
}

} // namespace
