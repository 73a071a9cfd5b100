// The one shape of every sandbox error: "<call> failed: <description> (<ENAME>). Fix: <how>".
#pragma once

#include <string>
#include <string_view>

namespace sandbox::internal {

// "No such file or directory (ENOENT)". Thread-safe (static strings, unlike strerror).
std::string errnoText(int error);

// "chdir(\"/x\") failed: No such file or directory (ENOENT). Fix: ..." (no Fix part if hint empty)
std::string describeSyscallFailure(std::string_view call, int error, std::string_view hint);

}  // namespace sandbox::internal
