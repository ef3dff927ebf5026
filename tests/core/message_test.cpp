#include <grove/core/message.hpp>
#include <doctest/doctest.h>
