#include <gtest/gtest.h>

#include "convex/module_diff.h"

namespace {

using da::convex::ModuleHash;

TEST(ModuleDiff, SortsModulesIntoCreatedChangedRemovedAndUnchanged) {
  const std::vector<ModuleHash> before = {{"messages.js", "isolate", "aa"},
                                          {"legacy.js", "isolate", "bb"},
                                          {"actions.js", "isolate", "cc"},
                                          {"same.js", "isolate", "dd"},
                                          {"_deps/chunk-1.js", "isolate", "ee"}};
  const std::vector<ModuleHash> after = {{"messages.js", "isolate", "a2"},
                                         {"actions.js", "node", "cc"},  // moved to Node: changed
                                         {"same.js", "isolate", "dd"},
                                         {"ping.js", "isolate", "ff"},
                                         {"_deps/chunk-2.js", "isolate", "gg"}};
  const auto diff = da::convex::moduleDiff(before, after);
  EXPECT_EQ(diff.created, (std::vector<std::string>{"ping.js"}));
  EXPECT_EQ(diff.changed, (std::vector<std::string>{"actions.js", "messages.js"}));
  EXPECT_EQ(diff.removed, (std::vector<std::string>{"legacy.js"}));
  EXPECT_EQ(diff.unchanged, 1u) << "bundler chunks are neither listed nor counted";
}

TEST(ModuleDiff, AFirstPushCreatesEverything) {
  const auto diff = da::convex::moduleDiff({}, {{"b.js", "isolate", "1"}, {"a.js", "isolate", "2"}});
  EXPECT_EQ(diff.created, (std::vector<std::string>{"a.js", "b.js"}));
  EXPECT_TRUE(diff.changed.empty());
  EXPECT_TRUE(diff.removed.empty());
}

}  // namespace
