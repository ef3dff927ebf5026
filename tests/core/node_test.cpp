#include <grove/core/node.hpp>
#include <doctest/doctest.h>
