// Placeholder: filled in by the adversarial suite (issue #15).
#include <gtest/gtest.h>
