#include "sandbox/output_pump.h"

#include <cerrno>
#include <exception>
#include <fcntl.h>
#include <unistd.h>

namespace sandbox::internal {

OutputPump::OutputPump(UniqueFd read_end, const OutputSink& sink, uint64_t limit)
    : read_end_(std::move(read_end)), sink_(sink), limit_(limit),
      buffer_(std::make_unique<char[]>(kChunkBytes)) {}

OutputPump::ReadOutcome OutputPump::readChunk(size_t* bytes) {
  for (;;) {
    ssize_t n = ::read(read_end_.get(), buffer_.get(), kChunkBytes);
    if (n > 0) {
      *bytes = static_cast<size_t>(n);
      forward(std::string_view(buffer_.get(), *bytes));
      return ReadOutcome::kData;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return ReadOutcome::kWouldBlock;
    read_end_.reset();  // EOF: every writer is gone (or a read error we cannot recover from)
    return ReadOutcome::kClosed;
  }
}

void OutputPump::readOnce() {
  if (!open()) return;
  size_t bytes = 0;
  readChunk(&bytes);
}

void OutputPump::drainWithoutWaiting() {
  if (!open()) return;
  int capacity = ::fcntl(read_end_.get(), F_GETPIPE_SZ);
  size_t budget = capacity > 0 ? static_cast<size_t>(capacity) : 1024 * 1024;
  while (open()) {
    size_t bytes = 0;
    if (readChunk(&bytes) != ReadOutcome::kData || bytes >= budget) break;
    budget -= bytes;
  }
}

void OutputPump::forward(std::string_view chunk) {
  if (limit_ != 0 && forwarded_ + chunk.size() > limit_) {
    truncated_ = true;
    chunk = chunk.substr(0, static_cast<size_t>(limit_ - forwarded_));
  }
  if (chunk.empty() || !sink_error_.empty()) return;
  forwarded_ += chunk.size();
  if (!sink_) return;
  // runProcess must not throw, and must still kill and reap the child: contain the sink.
  try {
    sink_(chunk);
  } catch (const std::exception& e) {
    sink_error_ = e.what()[0] ? e.what() : "exception without message";
  } catch (...) {
    sink_error_ = "non-standard exception";
  }
  if (!sink_error_.empty()) truncated_ = true;
}

}  // namespace sandbox::internal
