#include <grove/core/exit_reason.hpp>
#include <doctest/doctest.h>
