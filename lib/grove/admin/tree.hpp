// grove/admin/tree.hpp — the live process tree of a node, as JSON: what the
// admin endpoint's /tree serves and its dashboard draws.
//
//   nlohmann::json t = co_await grove::admin::process_tree(node);
//   for (const auto& root : t["roots"]) std::cout << root["pid"] << ' ' << root["kind"] << '\n';
//
// The shape is documented in admin_server.hpp (/tree). Each process is
// read on its own worker and each supervisor answers a describe() call, so
// the tree is a consistent view of each process, not of the whole node at
// one instant. Call it from a process or a coroutine on the node.
#pragma once

#include <grove/core/node.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>

namespace grove::admin {

/// The tree of `n`'s live processes; at most `max_children` children shown
/// per parent (the rest counted in "more_children"); a supervisor that
/// does not answer within `describe_timeout` shows "supervisor_error".
awaitable<nlohmann::json> process_tree(node& n, std::size_t max_children = 200,
                                       duration describe_timeout = std::chrono::seconds(2));

} // namespace grove::admin
