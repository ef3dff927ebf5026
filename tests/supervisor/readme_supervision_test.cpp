// The README's supervision tree, verbatim between the markers: it compiles,
// runs, and restarts as the README says.
#include <doctest/doctest.h>

#include "../readme_check.hpp"

// --- README example begins
#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>
#include <grove/supervisor/dynamic_supervisor.hpp>
#include <grove/supervisor/supervisor.hpp>

#include <map>
#include <string>
#include <vector>

struct put {
  std::string key, value;
};
struct get {
  using reply_type = std::string;
  std::string key;
};
struct greet {
  using reply_type = std::string;
};

// The state every session shares.
class store : public grove::gen_server {
public:
  void handle_cast(put p) { data_[p.key] = p.value; }
  std::string handle_call(get g) { return data_[g.key]; }

private:
  std::map<std::string, std::string> data_;
};

// One per client, started at run time under the "sessions" supervisor.
class session : public grove::gen_server {
public:
  session(grove::server_ref<store> db, std::string name) : db_(db), name_(std::move(name)) {}
  grove::awaitable<std::string> handle_call(greet) {
    get request{"greeting"}; // named, not a temporary inside co_await: see "g++ 12" in the README
    std::string greeting = co_await db_.call(request);
    co_return greeting + ", " + name_;
  }

private:
  grove::server_ref<store> db_;
  std::string name_;
};

grove::awaitable<std::string> demo(grove::node& node) {
  std::vector<grove::child_spec> children{
      grove::server_child<store>("store"),
      grove::dynamic_supervisor_child("sessions", {.max_children = 10'000}),
  };
  // rest_for_one: if the store crashes, the sessions (started after it)
  // are stopped and restarted with it; a crashed session restarts alone.
  grove::supervisor_options options{.strategy = grove::restart_strategy::rest_for_one};
  grove::supervisor app = co_await grove::supervisor::start(node, children, options);

  std::vector<grove::child_info> kids = co_await app.which_children(); // store, sessions
  grove::server_ref<store> db(kids[0].process);
  grove::dynamic_supervisor sessions(kids[1].process);

  db.cast(put{"greeting", "hello"});
  grove::server_ref<session> s = co_await sessions.start_child<session>(db, std::string("grove"));
  co_return co_await s.call(greet{}); // "hello, grove"
}
// --- README example ends

#include <grove/core/error.hpp>

TEST_CASE("readme_supervision_tree_starts_and_answers") {
  grove::node node{{.threads = 2}};
  CHECK(node.block_on(demo(node)) == "hello, grove");
}

TEST_CASE("readme_supervision_tree_restarts_the_sessions_with_the_store") {
  grove::node node{{.threads = 2, .events = nullptr}};
  std::vector<grove::child_spec> children{
      grove::server_child<store>("store"),
      grove::dynamic_supervisor_child("sessions", {.max_children = 10'000}),
  };
  grove::supervisor_options options{.strategy = grove::restart_strategy::rest_for_one, .report = nullptr};
  auto app = node.block_on(grove::supervisor::start(node, children, options));
  auto before = node.block_on(app.which_children());
  grove::exit(before[0].process, grove::exit_reason::kill());
  // Each answer follows a whole handler of the supervisor: ask until both
  // children have been replaced (bounded).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::vector<grove::child_info> after;
  do {
    after = node.block_on(app.which_children());
  } while ((after[0].process == before[0].process || after[1].process == before[1].process ||
            !after[0].process || !after[1].process) &&
           std::chrono::steady_clock::now() < give_up);
  CHECK(after[0].process != before[0].process);
  CHECK(after[1].process != before[1].process); // rest_for_one took the sessions along
  CHECK_FALSE(grove::alive(before[1].process));
}

TEST_CASE("readme_shows_the_supervision_example_verbatim") {
  CHECK(readme_check::readme_holds_example_of("tests/supervisor/readme_supervision_test.cpp"));
}
