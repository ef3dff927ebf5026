#include <grove/core/cpus.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sched.h>
#include <sstream>
#include <thread>
#include <vector>

namespace grove {
namespace detail {

namespace {

std::optional<std::string> read_whole(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return std::move(text).str();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

std::optional<long long> to_integer(std::string_view s) {
  s = trim(s);
  long long v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

bool list_has(std::string_view comma_list, std::string_view item) {
  for (std::string_view x : split(comma_list, ',')) {
    if (x == item) return true;
  }
  return false;
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const char a = s[i + 1], b = s[i + 2], c = s[i + 3];
      if (a >= '0' && a <= '3' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out.push_back(static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

struct mount {
  std::string root;
  std::string point;
};

/// The first mount in `mountinfo` whose file system type is `fstype` and,
/// if `option` is not empty, whose super options list `option`.
std::optional<mount> find_mount(std::string_view mountinfo, std::string_view fstype, std::string_view option) {
  for (std::string_view line : split(mountinfo, '\n')) {
    const auto dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    const auto before = split(line.substr(0, dash), ' ');
    const auto after = split(line.substr(dash + 3), ' ');
    if (before.size() < 5 || after.size() < 3) continue;
    if (after[0] != fstype) continue;
    if (!option.empty() && !list_has(after[2], option)) continue;
    return mount{unescape(before[3]), unescape(before[4])};
  }
  return std::nullopt;
}

/// The path in /proc/self/cgroup of the v1 hierarchy holding `controller`,
/// or (controller empty) of the v2 hierarchy.
std::optional<std::string> cgroup_path(std::string_view proc_self_cgroup, std::string_view controller) {
  for (std::string_view line : split(proc_self_cgroup, '\n')) {
    const auto first = line.find(':');
    if (first == std::string_view::npos) continue;
    const auto second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    const std::string_view id = line.substr(0, first);
    const std::string_view controllers = line.substr(first + 1, second - first - 1);
    const std::string_view path = trim(line.substr(second + 1));
    if (controller.empty() ? (id == "0" && controllers.empty()) : list_has(controllers, controller)) return std::string(path);
  }
  return std::nullopt;
}

/// Every cgroup directory from the process's own up to the mount point.
std::vector<std::string> directories(const mount& m, const std::string& path) {
  std::string rel;
  if (m.root == "/") {
    rel = path == "/" ? "" : path;
  } else if (path.compare(0, m.root.size(), m.root) == 0 && (path.size() == m.root.size() || path[m.root.size()] == '/')) {
    rel = path.substr(m.root.size());
  } // else: the process's cgroup is not under this mount (no cgroup namespace); the mount point is all we can read
  std::vector<std::string> dirs;
  for (;;) {
    dirs.push_back(m.point + rel);
    if (rel.empty()) return dirs;
    const auto slash = rel.rfind('/');
    rel.resize(slash == std::string::npos ? 0 : slash);
  }
}

void keep_lower(std::optional<double>& best, std::optional<double> q) {
  if (q && (!best || *q < *best)) best = q;
}

} // namespace

std::optional<double> parse_cpu_max(std::string_view text) {
  const auto fields = split(trim(text), ' ');
  if (fields.size() != 2 || fields[0] == "max") return std::nullopt;
  const auto quota = to_integer(fields[0]);
  const auto period = to_integer(fields[1]);
  if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<double> parse_cfs_quota(std::string_view quota_text, std::string_view period_text) {
  const auto quota = to_integer(quota_text);
  const auto period = to_integer(period_text);
  if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<double> cgroup_cpu_quota(std::string_view proc_self_cgroup, std::string_view mountinfo,
                                       const std::function<std::optional<std::string>(const std::string&)>& read_file) {
  std::optional<double> best;
  const auto v2_path = cgroup_path(proc_self_cgroup, "");
  const auto v2_mount = find_mount(mountinfo, "cgroup2", "");
  if (v2_path && v2_mount) {
    for (const std::string& dir : directories(*v2_mount, *v2_path)) {
      if (const auto text = read_file(dir + "/cpu.max")) keep_lower(best, parse_cpu_max(*text));
    }
  }
  const auto v1_path = cgroup_path(proc_self_cgroup, "cpu");
  const auto v1_mount = find_mount(mountinfo, "cgroup", "cpu");
  if (v1_path && v1_mount) {
    for (const std::string& dir : directories(*v1_mount, *v1_path)) {
      const auto quota = read_file(dir + "/cpu.cfs_quota_us");
      const auto period = read_file(dir + "/cpu.cfs_period_us");
      if (quota && period) keep_lower(best, parse_cfs_quota(*quota, *period));
    }
  }
  return best;
}

std::optional<double> cgroup_cpu_quota(std::string_view proc_self_cgroup, std::string_view mountinfo) {
  return cgroup_cpu_quota(proc_self_cgroup, mountinfo, read_whole);
}

} // namespace detail

namespace {

std::size_t affinity_cpus() {
  for (int cpus = 1024; cpus <= 1 << 20; cpus *= 2) {
    cpu_set_t* set = CPU_ALLOC(cpus);
    if (!set) break;
    const std::size_t bytes = CPU_ALLOC_SIZE(cpus);
    CPU_ZERO_S(bytes, set);
    const int rc = sched_getaffinity(0, bytes, set);
    const int count = rc == 0 ? CPU_COUNT_S(bytes, set) : 0;
    const int err = errno;
    CPU_FREE(set);
    if (rc == 0) return static_cast<std::size_t>(count);
    if (err != EINVAL) break; // EINVAL: the kernel's mask is wider than ours
  }
  return std::thread::hardware_concurrency();
}

} // namespace

std::size_t available_cpus() {
  std::size_t n = affinity_cpus();
  const auto cgroup = detail::read_whole("/proc/self/cgroup");
  const auto mountinfo = detail::read_whole("/proc/self/mountinfo");
  if (cgroup && mountinfo) {
    if (const auto quota = detail::cgroup_cpu_quota(*cgroup, *mountinfo)) {
      const auto limit = static_cast<std::size_t>(std::ceil(*quota));
      if (n == 0 || limit < n) n = limit;
    }
  }
  return std::max<std::size_t>(n, 1);
}

} // namespace grove
