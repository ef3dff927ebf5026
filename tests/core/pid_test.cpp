#include <grove/core/pid.hpp>
#include <grove/core/testing.hpp>

#include <grove/core/error.hpp>
#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <sstream>
#include <string>
#include <unordered_set>

using grove::awaitable;

namespace {
grove::awaitable<void> idle(grove::process& self) {
  co_await self.receive();
}
} // namespace

TEST_CASE("null_pid_is_false_and_prints_as_null") {
  grove::pid p;
  CHECK_FALSE(p);
  CHECK(p.to_string() == "<null>");
  CHECK(p == grove::pid{});
  CHECK_FALSE(grove::alive(p));
  grove::send(p, 1); // dropped, no error
}

TEST_CASE("pids_are_printable_comparable_and_hashable_values") {
  grove::node node{{.threads = 2}};
  grove::spawn_options on1;
  on1.worker = 1;
  grove::pid a = grove::spawn(node, idle);
  grove::pid b = grove::spawn(node, idle, on1);
  grove::pid a2 = a;
  CHECK(a == a2);
  CHECK(a != b);
  CHECK((a < b || b < a));
  std::ostringstream os;
  os << b;
  std::ostringstream expected;
  expected << '<' << node.id() << ".1." << b.serial() << '>';
  CHECK(os.str() == expected.str());
  std::unordered_set<grove::pid> set{a, b, a2};
  CHECK(set.size() == 2);
  grove::send(a, 0);
  grove::send(b, 0);
}

namespace {
struct whoami {
  using reply_type = grove::pid;
};
struct echo : grove::gen_server {
  grove::pid handle_call(whoami) { return self(); }
};

/// The code a call to `ref` fails with, empty if it answered.
awaitable<std::error_code> call_error(grove::server_ref<echo> ref) {
  return grove::testing::error_of(ref.call(whoami{}));
}
} // namespace

TEST_CASE("a_pid_carries_its_nodes_identity_and_is_rebuilt_from_its_parts") {
  grove::node n{{.threads = 2, .id = 7, .creation = 99}};
  CHECK(n.id() == 7);
  CHECK(n.creation() == 99);
  auto ref = n.block_on(grove::start<echo>(n));
  const grove::pid p = ref.id();
  CHECK(p.node_id() == 7);
  CHECK(p.creation() == 99);
  const grove::pid rebuilt(p.node_id(), p.creation(), p.worker(), p.slot(), p.serial());
  CHECK(rebuilt == p);
  CHECK(std::hash<grove::pid>{}(rebuilt) == std::hash<grove::pid>{}(p));
  CHECK(grove::alive(rebuilt));
  CHECK(n.block_on(call_error(grove::server_ref<echo>(rebuilt))) == std::error_code{});
  // The same parts under another creation name no process.
  const grove::pid other(p.node_id(), p.creation() + 1, p.worker(), p.slot(), p.serial());
  CHECK(other != p);
  CHECK_FALSE(same_node(other, p));
  CHECK_FALSE(grove::alive(other));
  CHECK(n.block_on(call_error(grove::server_ref<echo>(other))) == grove::errc::noproc);
  std::unordered_set<grove::pid> set{p, other, rebuilt};
  CHECK(set.size() == 2);
}

TEST_CASE("through_a_pid_whose_node_is_gone_every_operation_is_harmless") {
  auto gone = std::make_unique<grove::node>(grove::node_options{.threads = 1});
  auto ref = gone->block_on(grove::start<echo>(*gone));
  const grove::pid p = ref.id();
  const std::string text = p.to_string();
  gone.reset();

  CHECK(p.to_string() == text); // plain data: nothing to dangle
  CHECK_FALSE(grove::alive(p));
  CHECK(grove::mailbox_size(p) == 0);
  grove::send(p, grove::message(42));
  grove::exit(p, grove::exit_reason::kill());
  CHECK_FALSE(grove::cancel_timer(grove::timer_ref{}));

  grove::node here{{.threads = 1}};
  CHECK(here.block_on(call_error(ref)) == grove::errc::noproc);
  // From inside a process too: a monitor reports noproc, a link delivers
  // noproc to a trapping linker.
  auto reasons = here.block_on([p](grove::process& self) -> awaitable<std::string> {
    self.trap_exit(true);
    grove::send(p, grove::message(1));
    const grove::monitor_ref m = self.monitor(p);
    std::string out;
    grove::message first = co_await self.receive();
    if (auto* down = first.get_if<grove::down_message>()) {
      if (down->ref == m) out += "down:" + down->reason.to_string();
    }
    self.link(p);
    grove::message second = co_await self.receive();
    if (auto* ex = second.get_if<grove::exit_message>()) out += " exit:" + ex->reason.to_string();
    co_return out;
  });
  CHECK(reasons == "down:noproc exit:noproc");
}

TEST_CASE("a_node_restarted_under_the_same_id_does_not_answer_for_its_earlier_life") {
  grove::pid old_pid;
  {
    grove::node first{{.threads = 1, .id = 5}};
    old_pid = first.block_on(grove::start<echo>(first)).id();
  }
  grove::node second{{.threads = 1, .id = 5}};
  CHECK(second.creation() != old_pid.creation());
  auto fresh = second.block_on(grove::start<echo>(second));
  // The first process of each life: same worker, slot and serial.
  REQUIRE(fresh.id().serial() == old_pid.serial());
  REQUIRE(fresh.id().slot() == old_pid.slot());
  CHECK(fresh.id() != old_pid);
  CHECK_FALSE(grove::alive(old_pid));
  CHECK(grove::alive(fresh.id()));
  CHECK(second.block_on(call_error(grove::server_ref<echo>(old_pid))) == grove::errc::noproc);
}

TEST_CASE("two_live_nodes_with_one_identity_are_refused_with_a_clear_error") {
  grove::node first{{.threads = 1, .id = 9, .creation = 1}};
  try {
    grove::node twin{{.threads = 1, .id = 9, .creation = 1}};
    FAIL("a second node with the same identity started");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::errc::invalid_argument);
    CHECK(std::string(e.what()).find("node_options.id") != std::string::npos);
  }
  // The refused twin left nothing behind: the first still serves, and an
  // automatic id never collides with the chosen one.
  grove::node automatic{{.threads = 1}};
  CHECK(automatic.id() != 9);
  auto ref = first.block_on(grove::start<echo>(first));
  CHECK(automatic.block_on(call_error(ref)) == std::error_code{});
}
