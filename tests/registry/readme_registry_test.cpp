// The registry example of README.md, compiled and run.
#include <grove/core/node.hpp>
#include <grove/registry/local_registry.hpp>

#include "../readme_check.hpp"

#include <doctest/doctest.h>

#include <string>

namespace {

// --- README example begins
struct get_count {
  using reply_type = int;
};
struct bump {};

class page_counter : public grove::gen_server {
public:
  int handle_call(get_count) { return hits_; }
  void handle_cast(bump) { ++hits_; }

private:
  int hits_ = 0;
};

// One supervised counter per page, started by whoever needs it first:
// concurrent callers get the same process, and a restarted one is found
// under its name again.
grove::awaitable<int> visit(grove::registry& names, grove::dynamic_supervisor counters, std::string page) {
  std::string name = "hits/" + page;
  co_await grove::start_child<page_counter>(names, name, counters); // or the one already running
  auto counter = grove::via<page_counter>(names, name);              // resolved when sent
  counter.cast(bump{});
  co_return co_await counter.call(get_count{});
}

// grove::node node;
// grove::local_registry names(node);  // an object you own: two can live side by side
// auto counters = node.block_on(grove::dynamic_supervisor::start(node, {}));
// node.block_on(visit(names, counters, "home"));  // 1, then 2, ...
// --- README example ends

} // namespace

TEST_CASE("the_readme_registry_example_counts_visits_per_page") {
  grove::node node{{.threads = 2}};
  grove::local_registry names(node);
  grove::dynamic_supervisor_options quiet;
  quiet.report = nullptr;
  auto counters = node.block_on(grove::dynamic_supervisor::start(node, quiet));
  CHECK(node.block_on(visit(names, counters, "home")) == 1);
  CHECK(node.block_on(visit(names, counters, "home")) == 2);
  CHECK(node.block_on(visit(names, counters, "about")) == 1);
  CHECK(names.count() == 2);
  CHECK(node.block_on(counters.count_children()).workers == 2);
  CHECK(readme_check::readme_holds_example_of("tests/registry/readme_registry_test.cpp"));
}
