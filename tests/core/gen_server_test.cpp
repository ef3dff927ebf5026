#include <grove/core/gen_server.hpp>
#include <doctest/doctest.h>
