// Internal: the requests a registry's process serves, for any backend
// (local_registry, etcd_registry): the registry object turns each of its
// operations into one of these calls.
#pragma once

#include <grove/core/pid.hpp>
#include <grove/registry/registry.hpp>

#include <any>
#include <string>
#include <system_error>

namespace grove::detail {

struct register_request {
  using reply_type = std::error_code;
  std::string name;
  pid owner;
};
struct unregister_request {
  using reply_type = bool;
  std::string name;
  pid owner;
};
struct join_request {
  using reply_type = std::error_code;
  std::string key;
  std::any value;
  pid member;
};
struct leave_request {
  using reply_type = bool;
  std::string key;
  pid member;
};
struct watch_request {
  using reply_type = std::error_code;
  std::string key;
  pid watcher;
  bool on;
};
struct claim_request {
  using reply_type = name_claim;
  std::string name;
};
struct settle_request {
  using reply_type = bool;
  std::string name;
  pid started;
};
struct meta_request {
  using reply_type = bool;
  std::string key;
  std::string value;
};

} // namespace grove::detail
