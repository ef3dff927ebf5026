#include <grove/core/message.hpp>

#include <grove/core/error.hpp>

#include <doctest/doctest.h>

#include <array>
#include <memory>
#include <string>

namespace {
struct small {
  int a;
};
struct large {
  std::array<char, 200> bytes{};
  std::string name;
};
} // namespace

TEST_CASE("message_holds_small_and_large_values_and_checks_the_type") {
  grove::message empty;
  CHECK_FALSE(empty.has_value());
  CHECK_FALSE(empty.is<int>());

  grove::message s = small{7};
  CHECK(s.is<small>());
  CHECK_FALSE(s.is<int>());
  CHECK(s.get_if<int>() == nullptr);
  CHECK(s.get<small>().a == 7);
  CHECK_THROWS_AS(s.get<int>(), grove::error);

  large l;
  l.name = "big";
  grove::message m = l;
  grove::message moved = std::move(m);
  CHECK_FALSE(m.has_value());
  CHECK(moved.get<large>().name == "big");
}

TEST_CASE("message_is_move_only_and_destroys_what_it_holds") {
  auto tracked = std::make_shared<int>(1);
  {
    grove::message m = tracked; // shared_ptr: inline storage
    grove::message n;
    n = std::move(m);
    CHECK(tracked.use_count() == 2);
    grove::message u = std::make_unique<int>(5); // move-only payloads work
    CHECK(*u.get<std::unique_ptr<int>>() == 5);
  }
  CHECK(tracked.use_count() == 1);
}
