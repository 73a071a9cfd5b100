#include <gtest/gtest.h>

#include "convex/version_fit.h"

using da::convex::fitOfLibraryToCli;
using da::convex::majorVersionOf;
using da::convex::VersionFit;

TEST(VersionFit, SameMajorIsPushedAnotherIsRefused) {
  EXPECT_EQ(fitOfLibraryToCli("1.49.0", "1.49.0"), VersionFit::kSame);
  EXPECT_EQ(fitOfLibraryToCli("1.48.2", "1.49.0"), VersionFit::kMinorDiffers);
  EXPECT_EQ(fitOfLibraryToCli("1.50.0-alpha.1", "1.49.0"), VersionFit::kMinorDiffers);
  EXPECT_EQ(fitOfLibraryToCli("2.0.0", "1.49.0"), VersionFit::kMajorDiffers);
  EXPECT_EQ(fitOfLibraryToCli("0.19.0", "1.49.0"), VersionFit::kMajorDiffers);
  EXPECT_EQ(fitOfLibraryToCli("10.0.0", "1.49.0"), VersionFit::kMajorDiffers);  // not a prefix match
  EXPECT_EQ(fitOfLibraryToCli("", "1.49.0"), VersionFit::kMajorDiffers);
  EXPECT_EQ(fitOfLibraryToCli("v1.49.0", "1.49.0"), VersionFit::kMajorDiffers);  // not a version npm writes
}

TEST(VersionFit, MajorIsTheLeadingDigits) {
  EXPECT_EQ(majorVersionOf("1.49.0"), "1");
  EXPECT_EQ(majorVersionOf("12.0.1"), "12");
  EXPECT_EQ(majorVersionOf("x.1"), "");
}
