#include <grove/core/pid.hpp>
#include <doctest/doctest.h>
