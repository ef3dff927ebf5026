// grove/core/cpus.hpp — how many CPUs this process may really use.
//
//   std::size_t n = grove::available_cpus();   // what node_options::threads = 0 starts
//
// std::thread::hardware_concurrency() counts the machine's CPUs. It ignores
// the process's affinity mask (taskset, a container's cpuset) and a cgroup
// CPU quota (docker --cpus, a Kubernetes limit). A node started with more
// workers than it has CPUs gets threads that preempt each other, and its
// tail latency suffers.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace grove {

/// The CPUs this process may use: the number of CPUs in the calling thread's
/// affinity mask, lowered to a cgroup CPU quota (v1 cpu.cfs_quota_us /
/// cpu.cfs_period_us, or v2 cpu.max, the tightest along the cgroup's
/// ancestors), rounded up. At least 1. Read again at each call.
std::size_t available_cpus();

namespace detail {

/// A v2 `cpu.max` file's text ("max 100000", "150000 100000"): the quota in
/// CPUs, or nothing when unlimited or unreadable.
std::optional<double> parse_cpu_max(std::string_view text);

/// A v1 quota and period (cpu.cfs_quota_us, cpu.cfs_period_us; -1 is no
/// quota) in CPUs, or nothing.
std::optional<double> parse_cfs_quota(std::string_view quota, std::string_view period);

/// The tightest CPU quota of the cgroup `proc_self_cgroup` names (the text
/// of /proc/self/cgroup), found through the mounts in `mountinfo` (the text
/// of /proc/self/mountinfo), reading each cgroup directory from the process's
/// own up to the mount's root with `read_file` (a path → its text, or
/// nothing). Nothing when no quota applies.
std::optional<double> cgroup_cpu_quota(std::string_view proc_self_cgroup, std::string_view mountinfo,
                                       const std::function<std::optional<std::string>(const std::string&)>& read_file);

/// cgroup_cpu_quota reading the cgroup files from the file system.
std::optional<double> cgroup_cpu_quota(std::string_view proc_self_cgroup, std::string_view mountinfo);

} // namespace detail
} // namespace grove
