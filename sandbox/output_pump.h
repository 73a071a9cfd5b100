// Moves the child's merged stdout+stderr from the pipe to the OutputSink, enforcing the
// output limit and shielding the runner from a sink that throws.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sandbox/fds.h"
#include "sandbox/process.h"

namespace sandbox::internal {

class OutputPump {
 public:
  // `read_end` must be non-blocking. `limit` 0 means unlimited.
  OutputPump(UniqueFd read_end, const OutputSink& sink, uint64_t limit);

  // True until EOF or a read error; the fd to poll.
  bool open() const { return read_end_.valid(); }
  int fd() const { return read_end_.get(); }

  // One read(); forwards what it got. Call when poll() reports the fd readable.
  void readOnce();

  // Reads what is already in the pipe without waiting, at most one pipe capacity: used after
  // the process group was killed. A descendant that escaped the group may still hold the write
  // end and keep writing; bounding the drain is what keeps it from holding us here.
  void drainWithoutWaiting();

  bool truncated() const { return truncated_; }
  // Non-empty if the sink threw; later output was dropped.
  const std::string& sinkError() const { return sink_error_; }

 private:
  enum class ReadOutcome { kData, kWouldBlock, kClosed };
  ReadOutcome readChunk(size_t* bytes);
  void forward(std::string_view chunk);

  static constexpr size_t kChunkBytes = 64 * 1024;

  UniqueFd read_end_;
  const OutputSink& sink_;
  const uint64_t limit_;
  uint64_t forwarded_ = 0;
  bool truncated_ = false;
  std::string sink_error_;
  std::unique_ptr<char[]> buffer_;
};

}  // namespace sandbox::internal
