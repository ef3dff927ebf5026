#include <grove/admin/tree.hpp>

#include <grove/supervisor/dynamic_supervisor.hpp>
#include <grove/supervisor/supervisor.hpp>

#include <algorithm>
#include <sstream>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace grove::admin {

namespace {

using json = nlohmann::json;

template <class T>
std::string text_of(const T& value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

struct tree_builder {
  std::size_t max_children;
  duration describe_timeout;
  std::unordered_map<pid, const process_info*> by_pid;
  std::unordered_map<pid, std::vector<pid>> spawned; // by the spawner
  std::unordered_set<pid> placed;

  static constexpr int max_depth = 64;

  static json process_json(const process_info& i) {
    return json{{"pid", i.id.to_string()},
                {"kind", std::string(i.kind)},
                {"label", i.label},
                {"mailbox", i.mailbox_size},
                {"links", i.links},
                {"monitors", i.monitors},
                {"trap_exit", i.trap_exit}};
  }

  awaitable<std::optional<supervision_info>> describe(const process_info& i, json& out) const {
    try {
      if (i.kind == "supervisor") co_return co_await supervisor(i.id).describe(describe_timeout);
      co_return co_await dynamic_supervisor(i.id).describe(describe_timeout);
    } catch (const std::exception& e) {
      out["supervisor_error"] = e.what();
    }
    co_return std::nullopt;
  }

  awaitable<json> node_of(pid p, int depth) {
    const process_info& info = *by_pid.at(p);
    placed.insert(p);
    json out = process_json(info);
    json children = json::array();
    std::size_t left_out = 0;
    std::unordered_set<pid> listed; // a supervisor's children, shown (or counted) as its children
    if (depth >= max_depth) {
      out["children"] = std::move(children);
      co_return out;
    }
    if (info.kind == "supervisor" || info.kind == "dynamic_supervisor") {
      std::optional<supervision_info> s = co_await describe(info, out);
      if (s) {
        json sup{{"strategy", s->strategy},
                 {"max_restarts", s->max_restarts},
                 {"max_seconds", s->max_seconds.count()},
                 {"restarts", s->restarts}};
        if (s->max_children) sup["max_children"] = *s->max_children;
        out["supervisor"] = std::move(sup);
        for (const child_info& c : s->children) {
          if (c.process) listed.insert(c.process);
          if (children.size() >= max_children) {
            ++left_out;
            continue;
          }
          json child = json::object();
          if (c.process && by_pid.contains(c.process) && !placed.contains(c.process)) {
            child = co_await node_of(c.process, depth + 1);
          }
          child["id"] = c.id;
          child["type"] = text_of(c.type);
          child["restart"] = text_of(c.restart);
          child["status"] = text_of(c.status);
          child["restarts"] = c.restarts;
          if (!child.contains("children")) child["children"] = json::array();
          children.push_back(std::move(child));
        }
      }
    }
    if (auto it = spawned.find(p); it != spawned.end()) {
      for (const pid& c : it->second) {
        if (placed.contains(c) || listed.contains(c)) continue;
        if (children.size() >= max_children) {
          ++left_out;
          continue;
        }
        children.push_back(co_await node_of(c, depth + 1));
      }
    }
    out["children"] = std::move(children);
    if (left_out != 0) out["more_children"] = left_out;
    co_return out;
  }
};

bool earlier(const pid& a, const pid& b) noexcept { return a.serial() < b.serial(); }

} // namespace

awaitable<nlohmann::json> process_tree(node& n, std::size_t max_children, duration describe_timeout) {
  const std::vector<process_info> all = co_await n.processes();
  tree_builder b{max_children, describe_timeout, {}, {}, {}};
  for (const process_info& i : all) b.by_pid.emplace(i.id, &i);
  std::vector<pid> roots;
  for (const process_info& i : all) {
    if (i.parent && b.by_pid.contains(i.parent)) {
      b.spawned[i.parent].push_back(i.id);
    } else {
      roots.push_back(i.id);
    }
  }
  std::sort(roots.begin(), roots.end(), earlier);
  for (auto& [parent, children] : b.spawned) std::sort(children.begin(), children.end(), earlier);
  json out{{"node", n.id()}, {"processes", all.size()}};
  json shown = json::array();
  std::size_t left_out = 0;
  for (const pid& r : roots) {
    if (b.placed.contains(r)) continue;
    if (shown.size() >= max_children) {
      ++left_out;
      continue;
    }
    shown.push_back(co_await b.node_of(r, 0));
  }
  out["roots"] = std::move(shown);
  if (left_out != 0) out["more_roots"] = left_out;
  co_return out;
}

} // namespace grove::admin
