#include "sandbox/syscall_error.h"

#include <cstring>

namespace sandbox::internal {

std::string errnoText(int error) {
  const char* description = ::strerrordesc_np(error);
  const char* name = ::strerrorname_np(error);
  std::string text = description ? description : "Unknown error " + std::to_string(error);
  if (name) text += std::string(" (") + name + ")";
  return text;
}

std::string describeSyscallFailure(std::string_view call, int error, std::string_view hint) {
  std::string text = std::string(call) + " failed: " + errnoText(error);
  if (!hint.empty()) text += ". Fix: " + std::string(hint);
  return text;
}

}  // namespace sandbox::internal
