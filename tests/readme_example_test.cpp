// The README's example, verbatim between the markers, so it always compiles.
#include <doctest/doctest.h>

#include "readme_check.hpp"

// --- README example begins
#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>

struct get {
  using reply_type = int; // so ref.call(get{}) returns an int
};
struct add {
  int n;
};

class counter : public grove::gen_server {
public:
  explicit counter(int start) : n_(start) {}
  int handle_call(get) { return n_; }
  void handle_cast(add a) { n_ += a.n; }

private:
  int n_;
};

grove::awaitable<int> demo(grove::node& node) {
  auto ref = co_await grove::start<counter>(node, 40);
  ref.cast(add{2});
  co_return co_await ref.call(get{}); // 42
}
// --- README example ends

TEST_CASE("readme_example_compiles_and_answers_42") {
  grove::node node{{.threads = 2}};
  CHECK(node.block_on(demo(node)) == 42);
}

TEST_CASE("readme_shows_the_quick_start_example_verbatim") {
  CHECK(readme_check::readme_holds_example_of("tests/readme_example_test.cpp"));
}
