// The portable half of memkit/vm/virtual_memory.hpp: errors, argument checks and
// memkit::reservation, written against the vm:: functions (the platform half is
// src/vm/posix_virtual_memory.cpp).
#include "memkit/vm/virtual_memory.hpp"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <limits>
#include <new>
#include <string>

#include "memkit/core/align.hpp"
#include "memkit/core/platform.hpp"

namespace memkit {
namespace {

std::string address_message(errc code, const char* where, const void* address, std::size_t size,
                            const char* detail) {
    char buf[96];
    std::snprintf(buf, sizeof buf, " [%p, +%zu)", address, size);
    return std::string(where) + ": " +
           (code == errc::not_owned ? "range outside the reservation" : "invalid address") + buf +
           (detail != nullptr && *detail != '\0' ? std::string(": ") + detail : std::string());
}

using run_map = std::map<std::size_t, std::size_t>;

// A map node allocated up front, so that the accounting can be updated after a successful system
// call without any step that might throw (inserting a node handle never allocates).
bool make_spare_node(run_map::node_type& out) noexcept {
    try {
        run_map tmp;
        tmp.emplace(0, 0);
        out = tmp.extract(tmp.begin());
        return true;
    } catch (...) {
        return false;
    }
}

} // namespace

const char* to_string(page_access a) noexcept {
    switch (a) {
    case page_access::none: return "none";
    case page_access::read: return "read";
    case page_access::read_write: return "read_write";
    case page_access::read_execute: return "read_execute";
    }
    return "?";
}

const char* to_string(huge_page_status s) noexcept {
    switch (s) {
    case huge_page_status::not_requested: return "not_requested";
    case huge_page_status::transparent: return "transparent";
    case huge_page_status::explicit_pages: return "explicit_pages";
    case huge_page_status::huge_pages_unavailable: return "huge_pages_unavailable";
    }
    return "?";
}

const char* to_string(thp_mode m) noexcept {
    switch (m) {
    case thp_mode::always: return "always";
    case thp_mode::madvise: return "madvise";
    case thp_mode::never: return "never";
    case thp_mode::unknown: return "unknown";
    }
    return "?";
}

bad_address::bad_address(errc code, const char* where, const void* address, std::size_t size,
                         const char* detail)
    : std::invalid_argument(address_message(code, where, address, size, detail)), code_(code),
      address_(address), size_(size) {}

namespace vm {

namespace detail {

std::error_code check_range(const void* p, std::size_t& bytes, std::size_t granularity) noexcept {
    if (!is_aligned(p, granularity)) return make_error_code(errc::invalid_argument);
    std::size_t rounded = 0;
    if (bytes == 0 || !checked_align_up(bytes, granularity, rounded) ||
        reinterpret_cast<std::uintptr_t>(p) > std::numeric_limits<std::uintptr_t>::max() - rounded)
        return make_error_code(errc::bad_size);
    bytes = rounded;
    return {};
}

void throw_error(std::error_code ec, const char* where, const void* p, std::size_t bytes) {
    if (ec.category() == error_category()) {
        switch (static_cast<errc>(ec.value())) {
        case errc::out_of_memory: throw out_of_memory(where, bytes);
        case errc::bad_size: throw bad_size(where, bytes, static_cast<std::size_t>(PTRDIFF_MAX));
        case errc::invalid_alignment: throw invalid_alignment(where, bytes, std::size_t{1} << 62);
        case errc::invalid_argument:
            throw bad_address(errc::invalid_argument, where, p, bytes,
                              "not aligned to the page size");
        case errc::not_owned: throw bad_address(errc::not_owned, where, p, bytes, "");
        default: break;
        }
    }
    throw std::system_error(ec, where);
}

} // namespace detail

void* reserve(std::size_t bytes, std::size_t alignment) {
    std::error_code ec;
    void* p = try_reserve(bytes, alignment, ec);
    if (p == nullptr) {
        if (ec == errc::invalid_alignment)
            throw invalid_alignment("memkit::vm::reserve", alignment, std::size_t{1} << 62);
        detail::throw_error(ec, "memkit::vm::reserve", nullptr, bytes);
    }
    return p;
}

void commit(void* p, std::size_t bytes) {
    if (auto ec = try_commit(p, bytes)) detail::throw_error(ec, "memkit::vm::commit", p, bytes);
}

void decommit(void* p, std::size_t bytes) {
    if (auto ec = try_decommit(p, bytes)) detail::throw_error(ec, "memkit::vm::decommit", p, bytes);
}

void protect(void* p, std::size_t bytes, page_access access) {
    if (auto ec = try_protect(p, bytes, access))
        detail::throw_error(ec, "memkit::vm::protect", p, bytes);
}

} // namespace vm

// ---- reservation ---------------------------------------------------------------------------

reservation::reservation(std::size_t bytes, reservation_options opts)
    : granularity_(vm::page_size()) {
    if (bytes == 0) throw bad_size(name, 0, static_cast<std::size_t>(PTRDIFF_MAX));
    if (opts.alignment != 0 && !is_pow2(opts.alignment))
        throw invalid_alignment(name, opts.alignment, std::size_t{1} << 62);
    std::size_t alignment = opts.alignment;
    std::size_t size = bytes;

    if (opts.huge_pages == huge_page_request::explicit_pages) {
        std::error_code ec;
        if (void* p = vm::map_explicit_huge_pages(bytes, ec); p != nullptr) {
            const std::size_t hps = vm::huge_page_size();
            base_ = static_cast<std::byte*>(p);
            size_ = align_up(bytes, hps);
            granularity_ = hps;
            huge_ = huge_page_status::explicit_pages;
            // The pool's pages are reserved and mapped read-write: everything is committed.
            try {
                runs_.emplace(0, size_);
            } catch (...) {
                vm::release(p, size_);
                throw;
            }
            committed_ = size_;
            if (alignment > hps && !is_aligned(base_, alignment)) {
                // Rare: an alignment above the huge page size. Retry the portable way.
                reset();
                granularity_ = vm::page_size();
            } else {
                return;
            }
        }
        opts.huge_pages = huge_page_request::transparent; // the documented fallback
    }

    if (opts.huge_pages == huge_page_request::transparent) {
        const std::size_t hps = vm::huge_page_size();
        if (hps == 0) {
            huge_ = huge_page_status::huge_pages_unavailable;
        } else {
            // Huge pages back aligned 2 MiB chunks only: align the base and round the size so
            // that the last chunk is whole too.
            alignment = std::max(alignment, hps);
            if (!checked_align_up(bytes, hps, size))
                throw bad_size(name, bytes, static_cast<std::size_t>(PTRDIFF_MAX));
        }
    }

    base_ = static_cast<std::byte*>(vm::reserve(size, alignment));
    size_ = align_up(size, granularity_);
    if (opts.huge_pages == huge_page_request::transparent &&
        huge_ != huge_page_status::huge_pages_unavailable)
        huge_ = vm::advise_transparent_huge_pages(base_, size_);
}

reservation::reservation(reservation&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)),
      committed_(std::exchange(o.committed_, 0)), granularity_(o.granularity_),
      huge_(std::exchange(o.huge_, huge_page_status::not_requested)), runs_(std::move(o.runs_)) {
    o.runs_.clear();
}

reservation& reservation::operator=(reservation&& o) noexcept {
    if (this != &o) {
        reset();
        base_ = std::exchange(o.base_, nullptr);
        size_ = std::exchange(o.size_, 0);
        committed_ = std::exchange(o.committed_, 0);
        granularity_ = o.granularity_;
        huge_ = std::exchange(o.huge_, huge_page_status::not_requested);
        runs_ = std::move(o.runs_);
        o.runs_.clear();
    }
    return *this;
}

void reservation::reset() noexcept {
    if (base_ != nullptr) vm::release(base_, size_);
    base_ = nullptr;
    size_ = 0;
    committed_ = 0;
    huge_ = huge_page_status::not_requested;
    runs_.clear();
}

std::pair<std::byte*, std::size_t> reservation::release_ownership() noexcept {
    std::pair<std::byte*, std::size_t> r{base_, size_};
    base_ = nullptr;
    size_ = 0;
    committed_ = 0;
    huge_ = huge_page_status::not_requested;
    runs_.clear();
    return r;
}

std::error_code reservation::check(std::size_t offset, std::size_t& bytes) const noexcept {
    if (!is_aligned(offset, granularity_)) return make_error_code(errc::invalid_argument);
    std::size_t rounded = 0;
    if (bytes == 0 || !checked_align_up(bytes, granularity_, rounded))
        return make_error_code(errc::bad_size);
    if (offset > size_ || rounded > size_ - offset) return make_error_code(errc::not_owned);
    bytes = rounded;
    return {};
}

bool reservation::is_committed(std::size_t offset, std::size_t bytes) const noexcept {
    if (offset > size_ || bytes > size_ - offset) return false;
    if (bytes == 0) return true;
    const std::size_t lo = align_down(offset, granularity_);
    const std::size_t hi = offset + bytes;
    auto it = runs_.upper_bound(lo);
    if (it == runs_.begin()) return false;
    --it;
    return it->second >= hi;
}

std::error_code reservation::apply(std::size_t lo, std::size_t bytes, bool commit) noexcept {
    const std::size_t hi = lo + bytes;
    run_map::node_type spare;
    if (commit) {
        // The first run that touches [lo, hi] (overlapping or adjacent): runs from there on that
        // start at or before hi are merged with the new range into one run.
        auto first = runs_.upper_bound(lo);
        if (first != runs_.begin() && std::prev(first)->second >= lo) --first;
        if (first != runs_.end() && first->first <= lo && first->second >= hi)
            return {}; // already committed: nothing to do, contents kept
        const bool reuse = first != runs_.end() && first->first <= hi;
        if (!reuse && !make_spare_node(spare)) return make_error_code(errc::out_of_memory);
        if (auto ec = vm::try_commit(base_ + lo, bytes)) return ec;

        std::size_t new_lo = lo, new_hi = hi, removed = 0;
        while (first != runs_.end() && first->first <= hi) {
            new_lo = std::min(new_lo, first->first);
            new_hi = std::max(new_hi, first->second);
            removed += first->second - first->first;
            auto next = std::next(first);
            if (spare.empty()) spare = runs_.extract(first);
            else runs_.erase(first);
            first = next;
        }
        if (!spare.empty()) { // always true: preallocated, or the first merged run
            spare.key() = new_lo;
            spare.mapped() = new_hi;
            runs_.insert(std::move(spare));
        }
        committed_ += (new_hi - new_lo) - removed;
        return {};
    }

    auto it = runs_.upper_bound(lo);
    if (it != runs_.begin() && std::prev(it)->second > lo) --it;
    if (it == runs_.end() || it->first >= hi) return {}; // nothing committed there
    const bool split = it->first < lo && it->second > hi;
    if (split && !make_spare_node(spare)) return make_error_code(errc::out_of_memory);
    if (auto ec = vm::try_decommit(base_ + lo, bytes)) return ec;

    if (split && !spare.empty()) {
        spare.key() = hi;
        spare.mapped() = it->second;
        it->second = lo;
        runs_.insert(std::move(spare));
        committed_ -= hi - lo;
        return {};
    }
    while (it != runs_.end() && it->first < hi) {
        auto next = std::next(it);
        if (it->first < lo) {
            committed_ -= it->second - lo;
            it->second = lo;
        } else if (it->second > hi) {
            committed_ -= hi - it->first;
            // (extract of a valid iterator never gives an empty node; the test keeps GCC's
            // null-dereference analysis from assuming it might)
            if (auto node = runs_.extract(it); !node.empty()) {
                node.key() = hi;
                runs_.insert(std::move(node));
            }
        } else {
            committed_ -= it->second - it->first;
            runs_.erase(it);
        }
        it = next;
    }
    return {};
}

std::error_code reservation::try_commit(std::size_t offset, std::size_t bytes) noexcept {
    if (auto ec = check(offset, bytes)) return ec;
    return apply(offset, bytes, true);
}

std::error_code reservation::try_decommit(std::size_t offset, std::size_t bytes) noexcept {
    if (auto ec = check(offset, bytes)) return ec;
    return apply(offset, bytes, false);
}

void* reservation::commit(std::size_t offset, std::size_t bytes) {
    if (auto ec = try_commit(offset, bytes))
        throw_error(ec, "memkit::reservation::commit", offset, bytes);
    return base_ + offset;
}

void reservation::decommit(std::size_t offset, std::size_t bytes) {
    if (auto ec = try_decommit(offset, bytes))
        throw_error(ec, "memkit::reservation::decommit", offset, bytes);
}

void reservation::protect(std::size_t offset, std::size_t bytes, page_access access) {
    if (auto ec = check(offset, bytes))
        throw_error(ec, "memkit::reservation::protect", offset, bytes);
    if (!is_committed(offset, bytes))
        throw bad_address(errc::invalid_argument, "memkit::reservation::protect", base_ + offset,
                          bytes, "range is not committed");
    if (auto ec = vm::try_protect(base_ + offset, bytes, access))
        throw_error(ec, "memkit::reservation::protect", offset, bytes);
}

void reservation::throw_error(std::error_code ec, const char* what, std::size_t offset,
                              std::size_t bytes) const {
    // Offsets past the end would form an out-of-range pointer: report the base instead.
    const void* at = offset <= size_ ? static_cast<const void*>(base_ + offset) : base_;
    if (ec == errc::invalid_argument)
        throw bad_address(errc::invalid_argument, what, at, bytes,
                          "offset is not a multiple of the reservation's granularity");
    if (ec == errc::not_owned)
        throw bad_address(errc::not_owned, what, at, bytes, "the range ends past size()");
    if (ec == errc::out_of_memory)
        throw out_of_memory(what, bytes, out_of_memory::unknown, committed_, size_);
    vm::detail::throw_error(ec, what, at, bytes);
}

} // namespace memkit
