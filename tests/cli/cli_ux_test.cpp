// Placeholder (issue #16).
#include <gtest/gtest.h>
