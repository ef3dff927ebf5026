// The access part: groved's access policy (access.hpp) as a remote term
// whose refresher is a child of groved's tree. It reads access.policy (a
// file, or an http(s):// URL) and access.refresh_ms.
#include "tree.hpp"

#include <grove/core/process.hpp>
#include <grove/remote_term/http_fetcher.hpp>
#include <grove/remote_term/remote_term.hpp>

#include <stdexcept>

namespace groved {
namespace {

// Tells the sessions of a new access policy (a process of its own: the
// listing waits on the listeners' supervisors).
struct session_notifier {
  std::shared_ptr<service_state> state;
  grove::awaitable<void> operator()(grove::process&) const { co_await notify_sessions(state); }
};

using policy_term = grove::remote_term<access_policy>;

std::shared_ptr<policy_term> make_term(const config& c, const std::shared_ptr<service_state>& state) {
  grove::remote_term_options<access_policy> o;
  o.name = "groved.access";
  if (c.access_policy.rfind("http://", 0) == 0 || c.access_policy.rfind("https://", 0) == 0) {
    grove::http_fetcher_options h;
    h.url = c.access_policy;
    o.fetcher = grove::http_fetcher(std::move(h));
  } else {
    o.fetcher = grove::file_fetcher(c.access_policy);
  }
  o.interval = c.access_refresh;
  o.retry_backoff = grove::backoff_policy::exponential({.initial = std::chrono::seconds(1), .max = c.access_refresh});
  o.max_bytes = 16u << 20;
  o.deserialize = [](std::string_view bytes) { return parse_access_policy(bytes); };
  std::weak_ptr<service_state> weak = state;
  o.on_span = [weak](const grove::term_span& span) {
    auto s = weak.lock();
    if (!s) return;
    if (span.what == grove::term_span::phase::stop && span.status == grove::term_status::updated) {
      s->log.log(log_level::info, "access_policy_loaded", {{"msg", "a new access policy is in force"}});
      grove::spawn(s->registry->node(), session_notifier{s});
    } else if (span.what == grove::term_span::phase::exception) {
      s->log.log(log_level::error, "access_policy_refused",
                 {{"msg", span.error + "; the policy in force stays (if there is one)"}});
    }
  };
  return std::make_shared<policy_term>(std::move(o));
}

// The refresher, then its first attempt: nothing after this part starts
// before a policy is in force.
grove::awaitable<grove::pid> start_access(grove::child_start inner, std::shared_ptr<policy_term> term,
                                          grove::duration timeout, grove::node& n) {
  const grove::pid refresher = co_await inner(n);
  if (!term->loaded()) {
    co_await term->first_attempt(timeout);
    if (!term->loaded()) throw std::runtime_error("access.policy: " + term->stats().last_error);
  }
  co_return refresher;
}

} // namespace

part access_part(const config& c, const std::shared_ptr<service_state>& state) {
  std::shared_ptr<policy_term> term = make_term(c, state);
  state->access = term.get(); // outlives the tree: main holds the parts until it ends
  part p;
  p.name = "access";
  p.child = term->child_spec("access");
  grove::child_start inner = p.child.start;
  p.child.start = [inner, term](grove::node& n) { return start_access(inner, term, std::chrono::seconds(30), n); };
  // The policy applies once read; a bad one is refused (logged) and the one in force stays.
  p.reload = [term]() -> grove::awaitable<void> {
    term->update();
    co_return;
  };
  return p;
}

} // namespace groved
