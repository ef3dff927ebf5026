#include <grove/core/process.hpp>
#include <doctest/doctest.h>
