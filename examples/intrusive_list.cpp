// An LRU page cache whose pages live in one array and move between two intrusive lists.
//
// Every page object is created once, in a std::vector the cache owns; memkit::intrusive_list links
// them through a hook inside the page, so moving a page between the free list and the
// recently-used list, or to the front on a hit, is a few pointer writes: no allocation, no copy,
// and erase by address in O(1). The hash index stores plain pointers to the pages.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <vector>

#include <memkit/container/intrusive_list.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "intrusive_list: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct page : memkit::intrusive_list_hook<> {
    int key = -1;
    std::string data;
};

class page_cache {
public:
    explicit page_cache(std::size_t pages) : pages_(pages) {
        for (page& p : pages_) free_.push_back(p);
    }

    const std::string& get(int key) {
        if (auto it = index_.find(key); it != index_.end()) {
            ++hits_;
            page& p = *it->second;
            lru_.splice(lru_.begin(), lru_, lru_.iterator_to(p)); // most recent first, O(1)
            return p.data;
        }
        ++misses_;
        page* p = nullptr;
        if (!free_.empty()) {
            p = &free_.front();
            free_.pop_front();
        } else {
            p = &lru_.back(); // least recently used
            lru_.pop_back();
            index_.erase(p->key);
            ++evictions_;
        }
        p->key = key;
        p->data = "contents of block " + std::to_string(key);
        lru_.push_front(*p);
        index_[key] = p;
        return p->data;
    }

    void drop(int key) {
        if (auto it = index_.find(key); it != index_.end()) {
            lru_.erase(*it->second); // by address, O(1)
            free_.push_back(*it->second);
            index_.erase(it);
        }
    }

    void print() const {
        std::printf("hits %d, misses %d, evictions %d; most recent first:", hits_, misses_,
                    evictions_);
        for (const page& p : lru_) std::printf(" %d", p.key);
        std::printf(" (%zu free)\n", free_.size());
    }

    [[nodiscard]] int most_recent() const { return lru_.front().key; }
    [[nodiscard]] int least_recent() const { return lru_.back().key; }
    [[nodiscard]] int evictions() const { return evictions_; }

private:
    std::vector<page> pages_; // declared first: the lists below unlink before the pages die
    memkit::intrusive_list<page> free_;
    memkit::intrusive_list<page> lru_;
    std::unordered_map<int, page*> index_;
    int hits_ = 0, misses_ = 0, evictions_ = 0;
};

} // namespace

int main() {
    page_cache cache(4);
    for (int key : {1, 2, 3, 4, 1, 5, 2, 6, 1}) (void)cache.get(key);
    cache.print();
    require(cache.most_recent() == 1, "the last key read is the most recent");
    require(cache.least_recent() == 5, "5 is the least recently used");
    require(cache.evictions() == 3, "three pages were evicted");
    cache.drop(2);
    require(cache.get(7) == "contents of block 7", "a dropped page is reused");
    cache.print();
    require(cache.evictions() == 3, "the free page was used, nothing evicted");
    return 0;
}
