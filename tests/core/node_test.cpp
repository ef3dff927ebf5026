#include <grove/core/node.hpp>
#include <grove/core/cpus.hpp>

#include <grove/core/error.hpp>
#include <grove/core/gen_server.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sched.h>
#include <unistd.h>
#include <chrono>
#include <future>
#include <set>
#include <string>

using namespace std::chrono_literals;
using grove::awaitable;

namespace {
struct whoami {
  using reply_type = grove::pid;
};
struct echo : grove::gen_server {
  grove::pid handle_call(whoami) { return self(); }
};

awaitable<void> ignores_everything(grove::process& self) {
  for (;;) co_await self.receive();
}
} // namespace

TEST_CASE("node_runs_the_requested_number_of_workers_and_defaults_to_the_cpus_it_may_use") {
  grove::node two{{.threads = 2}};
  CHECK(two.size() == 2);
  grove::node dflt;
  CHECK(dflt.size() >= 1);
  CHECK(dflt.size() == grove::available_cpus());
  CHECK(grove::available_cpus() <= std::max(1u, std::thread::hardware_concurrency()));
}

TEST_CASE("a_node_started_on_a_thread_pinned_to_one_cpu_starts_one_worker") {
  // As under `taskset -c N`: the affinity mask, not the machine, sets the
  // default. A thread's mask is inherited by the threads it starts.
  const int cpu = sched_getcpu(); // one this process may use: it runs there
  REQUIRE(cpu >= 0);
  std::size_t cpus = 0, workers = 0;
  int pinned = -1;
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pinned = sched_setaffinity(0, sizeof one, &one);
    cpus = grove::available_cpus();
    grove::node n;
    workers = n.size();
  });
  t.join();
  REQUIRE(pinned == 0);
  CHECK(cpus == 1);
  CHECK(workers == 1);
}

namespace {
/// A cgroup file system laid out in a temporary directory, read by the
/// same code that reads /sys/fs/cgroup.
struct cgroup_tree {
  std::filesystem::path root = std::filesystem::temp_directory_path() /
                               ("grove-cgroup-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
  cgroup_tree() { std::filesystem::create_directories(root); }
  ~cgroup_tree() { std::filesystem::remove_all(root); }
  static int& counter() {
    static int n = 0;
    return n;
  }
  void write(const std::string& rel, const std::string& text) const {
    const auto p = root / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::optional<double> quota(const std::string& proc_self_cgroup, const std::string& mountinfo) const {
    return grove::detail::cgroup_cpu_quota(proc_self_cgroup, mountinfo, [](const std::string& path) -> std::optional<std::string> {
      std::ifstream in(path);
      if (!in) return std::nullopt;
      return std::string(std::istreambuf_iterator<char>(in), {});
    });
  }
};
} // namespace

TEST_CASE("cpu_quota_files_are_read_as_cpus_and_unlimited_ones_as_none") {
  CHECK(grove::detail::parse_cpu_max("max 100000\n") == std::nullopt);
  CHECK(grove::detail::parse_cpu_max("150000 100000\n") == doctest::Approx(1.5));
  CHECK(grove::detail::parse_cpu_max("50000 100000") == doctest::Approx(0.5));
  CHECK(grove::detail::parse_cpu_max("garbage") == std::nullopt);
  CHECK(grove::detail::parse_cpu_max("") == std::nullopt);
  CHECK(grove::detail::parse_cfs_quota("-1\n", "100000\n") == std::nullopt);
  CHECK(grove::detail::parse_cfs_quota("200000\n", "100000\n") == doctest::Approx(2.0));
  CHECK(grove::detail::parse_cfs_quota("x", "100000") == std::nullopt);
}

TEST_CASE("a_cgroup_v2_quota_is_the_tightest_along_the_cgroups_ancestors") {
  cgroup_tree fs;
  const std::string mp = (fs.root / "unified").string();
  fs.write("unified/cpu.max", "max 100000\n");
  fs.write("unified/kubepods/cpu.max", "300000 100000\n");
  fs.write("unified/kubepods/pod1/cpu.max", "max 100000\n");
  fs.write("unified/kubepods/pod1/app/cpu.max", "max 100000\n");
  const std::string mountinfo = "22 1 0:21 / /proc rw - proc proc rw\n"
                                "30 22 0:26 / " + mp + " rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
  CHECK(fs.quota("0::/kubepods/pod1/app\n", mountinfo) == doctest::Approx(3.0));
  fs.write("unified/kubepods/pod1/app/cpu.max", "150000 100000\n");
  CHECK(fs.quota("0::/kubepods/pod1/app\n", mountinfo) == doctest::Approx(1.5));
  // Unlimited all the way up, and no cgroup2 mount at all.
  CHECK(fs.quota("0::/\n", mountinfo) == std::nullopt);
  CHECK(fs.quota("0::/kubepods/pod1/app\n", "22 1 0:21 / /proc rw - proc proc rw\n") == std::nullopt);
}

TEST_CASE("a_cgroup_v1_quota_is_found_through_the_cpu_controllers_mount") {
  cgroup_tree fs;
  const std::string cpu_mp = (fs.root / "cpu,cpuacct").string();
  const std::string mem_mp = (fs.root / "memory").string();
  fs.write("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "250000\n");
  fs.write("cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
  fs.write("cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  fs.write("cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  fs.write("memory/docker/abc/cpu.cfs_quota_us", "100000\n"); // not the cpu controller: ignored
  fs.write("memory/docker/abc/cpu.cfs_period_us", "100000\n");
  const std::string mountinfo =
      "35 31 0:32 / " + mem_mp + " rw,relatime - cgroup cgroup rw,memory\n"
      "32 31 0:29 / " + cpu_mp + " rw,relatime - cgroup cgroup rw,cpu,cpuacct\n";
  const std::string proc_cgroup = "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n";
  CHECK(fs.quota(proc_cgroup, mountinfo) == doctest::Approx(2.5));
  // In a container, the mount's root is the container's own cgroup.
  const std::string ns_mountinfo = "32 31 0:29 /docker/abc " + cpu_mp + "/docker/abc rw - cgroup cgroup rw,cpu,cpuacct\n";
  CHECK(fs.quota(proc_cgroup, ns_mountinfo) == doctest::Approx(2.5));
  CHECK(fs.quota("4:cpu,cpuacct:/\n", mountinfo) == std::nullopt);
}

TEST_CASE("available_cpus_agrees_with_this_machines_mask_and_quota") {
  // The real files of this machine, through the same code.
  cpu_set_t mine;
  CPU_ZERO(&mine);
  REQUIRE(sched_getaffinity(0, sizeof mine, &mine) == 0);
  const std::size_t mask = static_cast<std::size_t>(CPU_COUNT(&mine));
  std::ifstream cg("/proc/self/cgroup"), mi("/proc/self/mountinfo");
  const std::string cgroup(std::istreambuf_iterator<char>(cg), {}), mountinfo(std::istreambuf_iterator<char>(mi), {});
  const auto quota = grove::detail::cgroup_cpu_quota(cgroup, mountinfo);
  std::size_t expected = mask;
  if (quota) expected = std::min(expected, static_cast<std::size_t>(std::ceil(*quota)));
  CHECK(grove::available_cpus() == std::max<std::size_t>(expected, 1));
}

TEST_CASE("two_nodes_live_side_by_side_and_talk_to_each_other") {
  grove::node a{{.threads = 1}};
  grove::node b{{.threads = 1}};
  CHECK(a.id() != b.id());
  auto ref = b.block_on(grove::start<echo>(b));
  CHECK(ref.id().node_id() == b.id());
  // A caller on node a reaches a server on node b.
  auto got = a.block_on([](grove::server_ref<echo> r) -> awaitable<grove::pid> { co_return co_await r.call(whoami{}); }(ref));
  CHECK(got == ref.id());
}

TEST_CASE("shutdown_gives_every_process_its_shutdown_exit") {
  grove::node node{{.threads = 2}};
  std::promise<std::string> seen;
  grove::spawn_options trapping;
  trapping.trap_exit = true;
  grove::spawn(
      node,
      [&seen](grove::process& self) -> awaitable<void> {
        for (;;) {
          grove::message m = co_await self.receive();
          if (auto* e = m.get_if<grove::exit_message>()) {
            seen.set_value((e->from ? "from a process: " : "from the node: ") + e->reason.to_string());
            co_return;
          }
        }
      },
      trapping);
  for (int i = 0; i < 100; ++i) grove::spawn(node, ignores_everything);
  CHECK(node.process_count() == 101);
  node.shutdown();
  CHECK(seen.get_future().get() == "from the node: shutdown");
  CHECK(node.process_count() == 0);
  node.shutdown(); // idempotent
}

TEST_CASE("shutdown_leaves_a_process_linked_to_its_live_parent_to_that_parent") {
  grove::node node{{.threads = 2}};
  std::promise<std::string> child_saw;
  std::promise<void> child_running;
  grove::spawn_options trapping;
  trapping.trap_exit = true;
  grove::spawn(
      node,
      [&child_saw, &child_running](grove::process& self) -> awaitable<void> {
        grove::spawn_options linked;
        linked.link = true;
        linked.trap_exit = true;
        linked.worker = 1;
        const grove::pid parent = self.self();
        grove::pid child = grove::spawn(
            self.node(),
            [&child_saw, &child_running, parent](grove::process& me) -> awaitable<void> {
              child_running.set_value();
              for (;;) {
                grove::message m = co_await me.receive();
                if (auto* e = m.get_if<grove::exit_message>()) {
                  child_saw.set_value(e->from == parent ? "from its parent" : "from elsewhere");
                  co_return;
                }
              }
            },
            linked);
        // The node's shutdown reaches this root only; it passes it on.
        for (;;) {
          grove::message m = co_await self.receive();
          if (auto* e = m.get_if<grove::exit_message>(); e && !e->from) break;
        }
        grove::exit(child, grove::exit_reason::shutdown());
      },
      trapping);
  REQUIRE(child_running.get_future().wait_for(10s) == std::future_status::ready);
  node.shutdown();
  auto saw = child_saw.get_future();
  REQUIRE(saw.wait_for(10s) == std::future_status::ready);
  CHECK(saw.get() == "from its parent");
  CHECK(node.process_count() == 0);
}

TEST_CASE("shutdown_kills_processes_that_ignore_it_after_the_grace") {
  grove::node node{{.threads = 1, .shutdown_grace = 50ms}};
  grove::spawn_options trapping;
  trapping.trap_exit = true;
  grove::pid stubborn = grove::spawn(node, ignores_everything, trapping);
  CHECK(grove::alive(stubborn));
  node.shutdown();
  CHECK_FALSE(grove::alive(stubborn));
  CHECK(node.process_count() == 0);
}

TEST_CASE("spawn_after_shutdown_fails_with_node_stopped") {
  grove::node node{{.threads = 1}};
  node.shutdown();
  try {
    grove::spawn(node, ignores_everything);
    FAIL("spawn after shutdown must throw");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::errc::node_stopped);
  }
}

TEST_CASE("block_on_rethrows_the_exception_of_the_work") {
  grove::node node{{.threads = 1}};
  CHECK_THROWS_WITH(node.block_on([]() -> awaitable<int> {
    throw std::runtime_error("failed inside");
    co_return 0;
  }()),
                    "failed inside");
  CHECK_THROWS_WITH(node.block_on([](grove::process&) -> awaitable<void> {
    throw std::runtime_error("failed in a process");
    co_return;
  }),
                    "failed in a process");
}

TEST_CASE("block_on_from_a_worker_is_refused_instead_of_deadlocking") {
  grove::node node{{.threads = 1}};
  std::promise<std::string> result;
  boost::asio::post(node.context(0), [&] {
    try {
      node.block_on([]() -> awaitable<void> { co_return; }());
      result.set_value("ran");
    } catch (const grove::error& e) {
      result.set_value(e.code() == grove::errc::invalid_argument ? "refused" : "wrong error");
    }
  });
  CHECK(result.get_future().get() == "refused");
  CHECK_THROWS_AS(node.context(5), grove::error);
}

TEST_CASE("a_throwing_posted_function_does_not_stop_the_worker") {
  grove::node node{{.threads = 1}};
  boost::asio::post(node.context(0), [] { throw std::runtime_error("user handler failed"); });
  // The worker still runs processes afterwards.
  auto ref = node.block_on(grove::start<echo>(node));
  CHECK(node.block_on([](grove::server_ref<echo> r) -> awaitable<grove::pid> { co_return co_await r.call(whoami{}); }(ref)) ==
        ref.id());
}

namespace {
struct crash_now {
  using reply_type = int;
};
struct fragile : grove::gen_server {
  int handle_call(crash_now) { throw std::runtime_error("handler bug"); }
};
} // namespace

TEST_CASE("process_crashed_events_name_processes_that_fail_by_their_own_hand_only") {
  std::mutex m;
  std::vector<std::string> reports;
  grove::node node{{.threads = 2, .events = [&](const grove::event& e) {
                      if (e.layer != "core" || e.name != "process_crashed") return;
                      std::lock_guard lock(m);
                      reports.push_back(std::string(e.field("pid")) + " " + std::string(e.field("reason")));
                    }}};
  grove::pid thrower;
  grove::pid linked_victim;
  node.block_on([&](grove::process& self) -> awaitable<void> {
    // A raw process whose body throws, a partner linked to it that dies from
    // its exit signal (or from noproc if it links late: no report either
    // way), and a killed one (no report).
    thrower = grove::spawn(self.node(), [](grove::process& p) -> awaitable<void> {
      co_await p.receive();
      throw std::runtime_error("body bug");
    });
    linked_victim = grove::spawn(self.node(), [t = thrower](grove::process& p) -> awaitable<void> {
      p.link(t);
      for (;;) co_await p.receive();
    });
    grove::pid killed = grove::spawn(self.node(), ignores_everything);
    auto m1 = self.monitor(linked_victim);
    auto m2 = self.monitor(killed);
    grove::exit(killed, grove::exit_reason::kill());
    CHECK((co_await self.receive()).get<grove::down_message>().ref == m2);
    grove::send(thrower, 0);
    CHECK((co_await self.receive()).get<grove::down_message>().ref == m1);

    // A gen_server whose handler throws: reported after terminate.
    auto f = co_await grove::start<fragile>(self.node());
    auto m3 = self.monitor(f.id());
    try {
      co_await f.call(crash_now{});
    } catch (const grove::error&) {
    }
    CHECK((co_await self.receive()).get<grove::down_message>().ref == m3);
    std::lock_guard lock(m);
    REQUIRE(reports.size() == 2);
    CHECK(reports[0] == thrower.to_string() + " {error, body bug}");
    CHECK(reports[1] == f.id().to_string() + " {error, handler bug}");
  });
}

TEST_CASE("a_root_that_set_its_own_shutdown_timeout_gets_it_and_the_others_get_the_grace") {
  auto finished = std::make_shared<std::atomic<bool>>(false);
  grove::node node{{.threads = 2, .shutdown_grace = 50ms}};
  grove::spawn_options trapping;
  trapping.trap_exit = true;
  std::promise<void> ready;
  // Asks for 20 s, and takes 300 ms after its shutdown exit.
  grove::pid patient = grove::spawn(
      node,
      [finished, &ready](grove::process& self) -> awaitable<void> {
        self.set_shutdown_timeout(20s);
        ready.set_value();
        for (;;) {
          grove::message m = co_await self.receive();
          if (m.is<grove::exit_message>()) break;
        }
        boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 300ms);
        co_await t.async_wait(boost::asio::use_awaitable);
        finished->store(true);
      },
      trapping);
  grove::pid stubborn = grove::spawn(node, ignores_everything, trapping);
  REQUIRE(ready.get_future().wait_for(10s) == std::future_status::ready);
  node.shutdown();
  CHECK(finished->load());
  CHECK_FALSE(grove::alive(patient));
  CHECK_FALSE(grove::alive(stubborn)); // killed after the 50 ms grace
  CHECK(node.process_count() == 0);
}
