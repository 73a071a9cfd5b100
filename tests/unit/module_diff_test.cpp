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

TEST(FunctionDiff, ANeighbourOrASignatureChangeIsAChangeAndTheRestIsNamed) {
  using da::convex::FunctionSpec;
  const std::vector<FunctionSpec> before = {{"messages.js:list", "Query", "{\"args\":1}"},
                                            {"messages.js:send", "Mutation", "{}"},
                                            {"channels.js:list", "Query", "{\"args\":1}"},
                                            {"channels.js:create", "Mutation", "{\"args\":1}"},
                                            {"legacy.js:old", "Query", "{}"}};
  const std::vector<FunctionSpec> after = {{"messages.js:list", "Query", "{\"args\":1}"},
                                           {"messages.js:send", "Mutation", "{}"},
                                           {"channels.js:list", "Query", "{\"args\":1}"},
                                           {"channels.js:create", "Mutation", "{\"args\":2}"},
                                           {"ping.js:ping", "Query", "{}"}};
  // messages.js changed as a module: both of its functions count as changed.
  const auto diff = da::convex::functionDiff(before, after, {"messages.js"});
  EXPECT_EQ(diff.created, (std::vector<std::string>{"ping.js:ping"}));
  EXPECT_EQ(diff.removed, (std::vector<std::string>{"legacy.js:old"}));
  EXPECT_EQ(diff.changed, (std::vector<std::string>{"channels.js:create", "messages.js:list", "messages.js:send"}));
  EXPECT_EQ(diff.unchanged, 1u);
}

}  // namespace
