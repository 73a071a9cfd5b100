// The network namespace of a namespaces-tier run: loopback only, and on it one listening
// socket that belongs to the agent. The job reaches the agent's egress proxy at
// 127.0.0.1:<port> and nothing else: no other interface, no route, no resolver.
//
// The namespace is made by a short-lived thread of the agent (unshare(CLONE_NEWNET) moves
// only the calling thread), which brings `lo` up, binds the listener there and keeps a handle
// on the namespace. The run's PID 1 joins it with setns() before it builds the job's root; the
// listener never enters the job, so no relay process runs inside and the job cannot close or
// replace it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "sandbox/fds.h"

namespace sandbox {

struct LoopbackNetwork {
  internal::UniqueFd netns;     // /proc/thread-self/ns/net of the new namespace (O_CLOEXEC)
  internal::UniqueFd listener;  // TCP, bound to 127.0.0.1:port inside it, listening, O_CLOEXEC
  uint16_t port = 0;
};

// Creates a namespace with `lo` up and a listener on 127.0.0.1:`port` (0: the kernel picks;
// every port is free in a new namespace, so a fixed one is fine too). Needs CAP_SYS_ADMIN and
// CAP_NET_ADMIN (the agent runs as root in this tier). nullopt with `error` naming the
// syscall, its arguments and the fix.
std::optional<LoopbackNetwork> createLoopbackNetwork(uint16_t port, std::string& error);

// The listener for a run without its own namespace (Landlock tier, none): 127.0.0.1:0 in
// the agent's namespace. nullopt with `error` as above.
std::optional<LoopbackNetwork> listenOnHostLoopback(std::string& error);

}  // namespace sandbox
