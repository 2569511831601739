// A flight recorder: the last N log lines, dumped when something goes wrong.
//
// memkit::circular_buffer with the overwrite policy keeps the newest `capacity()` elements in one
// block allocated up front: logging never allocates for the buffer and never grows it. When an
// error arrives, the recent history is printed oldest first through as_spans(), the two
// contiguous parts of the ring. A second buffer with the reject policy is a bounded work queue
// that refuses new jobs instead of dropping old ones.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include <memkit/container/circular_buffer.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "circular_buffer: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

class flight_recorder {
public:
    explicit flight_recorder(std::size_t lines) : lines_(lines) {} // overwrite by default

    void log(std::string line) {
        ++logged_;
        lines_.push_back(std::move(line)); // drops the oldest line once full
    }

    void dump() const {
        std::printf("last %zu of %zu lines:\n", lines_.size(), logged_);
        auto [older, newer] = lines_.as_spans();
        for (const std::string& l : older) std::printf("  %s\n", l.c_str());
        for (const std::string& l : newer) std::printf("  %s\n", l.c_str());
    }

    [[nodiscard]] const std::string& oldest() const { return lines_.front(); }
    [[nodiscard]] std::size_t size() const { return lines_.size(); }

private:
    memkit::circular_buffer<std::string> lines_;
    std::size_t logged_ = 0;
};

} // namespace

int main() {
    flight_recorder recorder(5);
    for (int request = 1; request <= 12; ++request) {
        recorder.log("request " + std::to_string(request) + " served in " +
                     std::to_string(3 + request % 4) + " ms");
        if (request == 12) {
            recorder.log("ERROR: request 12 failed");
            recorder.dump();
        }
    }
    require(recorder.size() == 5, "keeps exactly the last 5 lines");
    require(recorder.oldest() == "request 9 served in 4 ms", "the oldest kept line is request 9");

    // A bounded queue of jobs: with the reject policy a full queue says no and keeps the job.
    memkit::circular_buffer<std::string> jobs(3, memkit::full_policy::reject);
    int refused = 0;
    for (int j = 1; j <= 5; ++j) {
        std::string job = "job " + std::to_string(j);
        if (!jobs.try_push_back(std::move(job))) {
            require(job == "job " + std::to_string(j), "a refused job is not moved from");
            ++refused;
        }
    }
    std::printf("queued %zu jobs, refused %d; next: %s\n", jobs.size(), refused,
                jobs.front().c_str());
    require(refused == 2 && jobs.front() == "job 1", "the reject policy keeps the first three");
    return 0;
}
