#include <grove/supervisor/dynamic_supervisor.hpp>
#include <doctest/doctest.h>
