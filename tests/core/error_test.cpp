#include <grove/core/error.hpp>
#include <doctest/doctest.h>
