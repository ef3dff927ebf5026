// grovectl: a client to script erps connections from the shell and from
// tests. grovectl --help says how; exit codes are in apps/common/cli.hpp.
#include "../common/cli.hpp"

#include <grove/core/node.hpp>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <iostream>
#include <thread>

namespace {

using grove::erps::json;
using namespace grove::cli;

const char* usage =
    "usage: grovectl [FLAGS] call JSON         send one call, print the reply\n"
    "       grovectl [FLAGS] cast JSON         send one cast (returns once the daemon has it)\n"
    "       grovectl [FLAGS] subscribe TOPIC [--count N] [--retry-for MS]\n"
    "                                          print the topic's pushes as JSON lines until\n"
    "                                          Ctrl-C / SIGTERM (or N pushes); a dropped\n"
    "                                          connection is made again (and the subscription\n"
    "                                          with it), printing {\"link\":\"down\",\"reason\":R}\n"
    "                                          and then {\"link\":\"up\",\"gap_ms\":N,\"attempts\":K};\n"
    "                                          with --retry-for, a connection down longer than\n"
    "                                          MS milliseconds ends it with exit code 3\n"
    "       grovectl [FLAGS] script [FILE]     run a session from JSON lines (stdin by default)\n"
    "       grovectl [FLAGS] tenant list | get ID | install ID [CONFIG] | update ID CONFIG | uninstall ID\n"
    "                                          groved's tenant ops (an admin identity's; CONFIG is a\n"
    "                                          JSON object of limits, e.g. '{\"max_keys\":1000}');\n"
    "                                          --cert/--key pick the identity for this one command\n"
    "\n"
    "A groved of a cluster answers a client whose tenant another node serves with the error\n"
    "moved, naming that node's addresses: grovectl connects there and goes on (up to 3 moves;\n"
    "with --verbose it says so on stderr). A cast is confirmed with {\"op\":\"where\"} and sent\n"
    "again where that says; a script's casts before its first call are not (it fails, saying\n"
    "so). --no-follow prints the moved reply instead.\n"
    "\n"
    "FLAGS\n";

const char* script_help =
    "\nscript steps, one JSON object per line (blank lines and lines starting with # are skipped):\n"
    "  {\"call\": REQ [, \"expect\": PART] [, \"timeout_ms\": N]}   prints {\"line\":L,\"reply\":R}\n"
    "  {\"cast\": REQ}\n"
    "  {\"expect_push\": PART [, \"timeout_ms\": N]}   waits for the next push; prints {\"line\":L,\"push\":P}\n"
    "  {\"sleep_ms\": N}\n"
    "PART matches when every member it names is equal in the reply (objects recursively).\n"
    "A reply with \"ok\": false fails the script unless its step has an \"expect\".\n"
    "\n"
    "Output is JSON on stdout. Exit codes: 0 success, 1 remote error, 2 bad input,\n"
    "3 cannot connect (or connection lost), 4 TLS failure, 5 timeout, 6 an expectation\n"
    "not met; on failure one line on stderr says why.\n";

// True if every member `expected` names is in `actual` with a matching value.
bool matches(const json& expected, const json& actual) {
  if (expected.is_object()) {
    if (!actual.is_object()) return false;
    for (auto it = expected.begin(); it != expected.end(); ++it) {
      auto found = actual.find(it.key());
      if (found == actual.end() || !matches(it.value(), *found)) return false;
    }
    return true;
  }
  if (expected.is_array()) {
    if (!actual.is_array() || actual.size() != expected.size()) return false;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      if (!matches(expected[i], actual[i])) return false;
    }
    return true;
  }
  return expected == actual;
}

bool is_error_reply(const json& reply) {
  return reply.is_object() && reply.contains("ok") && reply["ok"] == false;
}

std::string error_text(const json& reply) {
  const json& e = reply.contains("error") ? reply["error"] : json();
  if (e.is_object() && e.contains("code")) {
    return e.value("code", std::string("error")) + ": " + e.value("message", std::string());
  }
  return reply.dump();
}

void print(const json& value) {
  std::cout << value.dump(-1, ' ', false, json::error_handler_t::replace) << '\n' << std::flush;
}

json call(grove::node& n, connected_client& c, json request, std::chrono::milliseconds timeout) {
  try {
    return n.block_on(c.ref().call(std::move(request), std::chrono::duration_cast<grove::duration>(timeout)));
  } catch (const failure&) {
    throw;
  } catch (const std::exception& e) {
    c.rethrow(e);
  }
}

// groved across nodes: a reply `moved` says which node serves this
// client's tenant, with its addresses. The endpoint to ask instead (the
// same transport, the same flags), or nullopt.
std::optional<endpoint> moved_to(const json& reply, const endpoint& e) {
  if (!is_error_reply(reply) || !reply.contains("error") || !reply["error"].is_object()) return std::nullopt;
  const json& error = reply["error"];
  if (error.value("code", std::string()) != "moved") return std::nullopt;
  auto at = error.find(e.tls ? "tls" : "tcp");
  if (at == error.end() || !at->is_string()) return std::nullopt;
  const std::string address = at->get<std::string>();
  const std::size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  const unsigned long port = std::strtoul(address.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port == 0 || port > 65535) return std::nullopt;
  endpoint next = e;
  next.host = std::move(host);
  next.port = static_cast<std::uint16_t>(port);
  return next;
}

// A moved client goes where it is sent, at most this many times in a row.
constexpr int max_moves = 3;

// One call on a connection of its own, following `moved` replies (unless
// --no-follow); `e` ends as the endpoint that answered. `request` makes the
// request anew for each try (a request is given up to the call, and a copy
// of a deeply nested one would recurse as deep as it nests).
json call_following(grove::node& n, endpoint& e, const std::function<json()>& request, bool follow) {
  for (int moves = 0;; ++moves) {
    auto c = connected_client::open(n, e, {});
    json reply = call(n, *c, request(), e.timeout);
    std::optional<endpoint> next = follow && moves < max_moves ? moved_to(reply, e) : std::nullopt;
    if (!next) return reply;
    if (e.verbose) std::cerr << "grovectl: " << error_text(reply) << "; following\n";
    e = std::move(*next);
  }
}

// Before a subscription: the node that serves this client's tenant
// (groved's `where`), so it is made there. A daemon that does not know
// `where` (not groved, or an older one) is asked as it is.
void settle_node(grove::node& n, endpoint& e, bool follow) {
  if (follow) (void)call_following(n, e, [] { return json{{"op", "where"}}; }, true);
}

// A cast has no answer; a call after it on the same connection returns only
// once the daemon has taken the cast (its answer, even an error, says so).
// The call is groved's `where`: a `moved` answer says the casts went to a
// node that does not serve this client's tenant, which dropped them; it is
// returned (else null).
json confirm_casts(grove::node& n, connected_client& c, std::chrono::milliseconds timeout) {
  try {
    json reply = n.block_on(c.ref().call(json{{"op", "where"}}, std::chrono::duration_cast<grove::duration>(timeout)));
    return is_error_reply(reply) && reply["error"].value("code", std::string()) == "moved" ? reply : json();
  } catch (const std::exception& e) {
    auto* g = dynamic_cast<const grove::error*>(&e);
    if (g && g->code() == grove::erps_errc::remote) return json(); // answered: the casts before it were read
    c.rethrow(e);
  }
}

int run_script(grove::node& n, endpoint e, std::istream& in, bool follow) {
  auto c = connected_client::open(n, e, {.keep_pushes = true});
  std::string text;
  int line = 0;
  bool casts_pending = false;
  bool casts_sent = false; // on this connection
  int moves = 0;
  while (std::getline(in, text)) {
    ++line;
    const auto first = text.find_first_not_of(" \t\r");
    if (first == std::string::npos || text[first] == '#') continue;
    const std::string where = "script line " + std::to_string(line);
    json step = json::parse(text, nullptr, false);
    if (step.is_discarded() || !step.is_object()) throw failure(bad_input, where + ": not a JSON object: " + text);
    std::chrono::milliseconds timeout = e.timeout;
    if (auto t = step.find("timeout_ms"); t != step.end()) {
      if (!t->is_number_unsigned() || t->get<std::uint64_t>() < 1 || t->get<std::uint64_t>() > 86'400'000) {
        throw failure(bad_input, where + ": timeout_ms: expected an integer from 1 to 86400000");
      }
      timeout = std::chrono::milliseconds(t->get<std::int64_t>());
    }
    if (auto r = step.find("call"); r != step.end()) {
      json reply = call(n, *c, std::move(*r), timeout);
      // The tenant is served by another node: the script goes on there
      // (this node took nothing of it: it serves no request of this tenant).
      while (std::optional<endpoint> next = follow && moves < max_moves ? moved_to(reply, e) : std::nullopt) {
        if (casts_sent) {
          throw failure(remote_error, where + ": " + error_text(reply) +
                                          "; the casts before it went to that node and were dropped (start the "
                                          "script with a call, such as {\"call\":{\"op\":\"where\"}})");
        }
        if (e.verbose) std::cerr << "grovectl: " << error_text(reply) << "; following\n";
        e = std::move(*next);
        ++moves;
        c = connected_client::open(n, e, {.keep_pushes = true});
        json again = json::parse(text); // (the request was given up to the first try)
        reply = call(n, *c, std::move(again["call"]), timeout);
      }
      casts_pending = false;
      print(json{{"line", line}, {"reply", reply}});
      if (auto x = step.find("expect"); x != step.end()) {
        if (!matches(*x, reply)) throw failure(expectation, where + ": expected " + x->dump() + ", got " + reply.dump());
      } else if (is_error_reply(reply)) {
        throw failure(remote_error, where + ": " + error_text(reply));
      }
    } else if (auto k = step.find("cast"); k != step.end()) {
      c->ref().cast(std::move(*k));
      casts_pending = true;
      casts_sent = true;
    } else if (auto p = step.find("expect_push"); p != step.end()) {
      std::optional<json> push = c->take_push(timeout);
      if (!push) throw failure(timed_out, where + ": no push within " + std::to_string(timeout.count()) + " ms");
      print(json{{"line", line}, {"push", *push}});
      if (!matches(*p, *push)) throw failure(expectation, where + ": expected a push " + p->dump() + ", got " + push->dump());
    } else if (auto s = step.find("sleep_ms"); s != step.end()) {
      if (!s->is_number_unsigned() || s->get<std::uint64_t>() > 3'600'000) {
        throw failure(bad_input, where + ": sleep_ms: expected an integer from 0 to 3600000");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(s->get<std::int64_t>()));
    } else {
      throw failure(bad_input, where + ": expected a step with \"call\", \"cast\", \"expect_push\" or \"sleep_ms\": " + text);
    }
  }
  if (casts_pending) {
    if (json moved = confirm_casts(n, *c, e.timeout); !moved.is_null()) {
      throw failure(remote_error, "the script's last casts went to a node that does not serve this client's tenant "
                                  "and were dropped: " + error_text(moved));
    }
  }
  return ok;
}

// SIGINT/SIGTERM end `subscribe`: a thread waits for them (they are blocked
// everywhere else) and wakes the main thread.
std::atomic<bool> stop_requested{false};

// The subscription is a setup call, so it is made again on every link; the
// drops in between print as {"link":"down",...} / {"link":"up","gap_ms":N}.
int run_subscribe(grove::node& n, const endpoint& e, const std::string& topic, std::uint64_t count,
                  std::chrono::milliseconds retry_for) {
  auto c = connected_client::open(n, e,
                                  {.keep_pushes = true,
                                   .ride_out_drops = true,
                                   .retry_for = retry_for,
                                   .setup_calls = {json{{"op", "subscribe"}, {"topic", topic}}}});
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  std::thread([set, c]() mutable {
    int number = 0;
    sigwait(&set, &number);
    stop_requested = true;
    c->notify();
  }).detach();
  // A call after the setup call on the same link answers once the
  // subscription is in place (or has been refused).
  call(n, *c, json{{"op", "ping"}}, e.timeout);
  std::uint64_t seen = 0;
  while (count == 0 || seen < count) {
    std::optional<json> push = c->take_push_until([] { return stop_requested.load(); });
    if (!push) break;
    print(*push);
    if (!push->contains("link")) ++seen; // the link lines are not pushes
  }
  return ok;
}

int run(int argc, char** argv) {
  endpoint e;
  std::vector<std::string> words;
  std::uint64_t count = 0;
  std::chrono::milliseconds retry_for{0};
  bool follow = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << usage << endpoint_help() << script_help;
      return ok;
    }
    if (parse_endpoint_flag(argc, argv, i, e)) continue;
    if (arg == "--no-follow") {
      follow = false;
      continue;
    }
    if (arg == "--count" || arg.rfind("--count=", 0) == 0) {
      const std::string v = arg == "--count" ? (i + 1 < argc ? argv[++i] : "") : arg.substr(8);
      char* end = nullptr;
      count = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || count == 0) throw failure(bad_input, "--count: expected a positive integer, got \"" + v + "\"");
      continue;
    }
    if (arg == "--retry-for" || arg.rfind("--retry-for=", 0) == 0) {
      const std::string v = arg == "--retry-for" ? (i + 1 < argc ? argv[++i] : "") : arg.substr(12);
      char* end = nullptr;
      const unsigned long long ms = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || v[0] == '-' || ms == 0 || ms > 86'400'000) {
        throw failure(bad_input, "--retry-for: expected milliseconds from 1 to 86400000, got \"" + v + "\"");
      }
      retry_for = std::chrono::milliseconds(ms);
      continue;
    }
    if (arg.size() > 1 && arg[0] == '-') throw failure(bad_input, "unknown flag " + arg + " (grovectl --help)");
    words.push_back(arg);
  }
  if (words.empty()) throw failure(bad_input, "expected a command: call, cast, subscribe, script or tenant (grovectl --help)");
  const std::string command = words[0];

  // Blocked in every thread the node starts; only subscribe's waiter takes them.
  if (command == "subscribe") {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
  signal(SIGPIPE, SIG_IGN);

  auto arguments = [&](std::size_t n, const std::string& what) {
    if (words.size() != n + 1) throw failure(bad_input, command + ": expected " + what);
  };
  if (command == "call" || command == "cast") {
    arguments(1, "one JSON argument");
    auto request = [&] { return parse_json_argument(words[1], command); };
    (void)request(); // a bad argument fails before any connection
    grove::node n({.threads = 1});
    if (command == "cast") {
      for (int moves = 0;; ++moves) {
        auto c = connected_client::open(n, e, {});
        c->ref().cast(request());
        json moved = confirm_casts(n, *c, e.timeout);
        if (moved.is_null()) return ok;
        // Dropped by a node that does not serve this tenant: sent again where it is served.
        std::optional<endpoint> next = follow && moves < max_moves ? moved_to(moved, e) : std::nullopt;
        if (!next) {
          print(moved);
          throw failure(remote_error, "the cast was dropped: " + error_text(moved));
        }
        if (e.verbose) std::cerr << "grovectl: " << error_text(moved) << "; following\n";
        e = std::move(*next);
      }
    }
    json reply = call_following(n, e, request, follow);
    print(reply);
    if (is_error_reply(reply)) throw failure(remote_error, error_text(reply));
    return ok;
  }
  if (command == "tenant") {
    // groved's tenant.* ops as words: grovectl tenant install shop '{"max_keys":100}'
    const std::string what = words.size() > 1 ? words[1] : "";
    json request = json::object();
    request["op"] = "tenant." + what;
    if (what == "list") {
      arguments(1, "tenant list (no more arguments)");
    } else if (what == "get" || what == "uninstall") {
      arguments(2, "tenant " + what + " ID");
      request["tenant"] = words[2];
    } else if (what == "install" || what == "update") {
      if (words.size() != 4 && !(what == "install" && words.size() == 3)) {
        throw failure(bad_input, "tenant " + what + ": expected ID" + (what == "install" ? " [CONFIG]" : " CONFIG") +
                                     " (CONFIG: a JSON object of limits)");
      }
      request["tenant"] = words[2];
      if (words.size() == 4) request["config"] = parse_json_argument(words[3], "tenant " + what);
    } else {
      throw failure(bad_input, "tenant: expected list, get, install, update or uninstall (grovectl --help)");
    }
    grove::node n({.threads = 1});
    json reply = call_following(n, e, [&] { return request; }, follow);
    print(reply);
    if (is_error_reply(reply)) throw failure(remote_error, error_text(reply));
    return ok;
  }
  if (command == "subscribe") {
    arguments(1, "a topic");
    grove::node n({.threads = 1});
    settle_node(n, e, follow);
    return run_subscribe(n, e, words[1], count, retry_for);
  }
  if (command == "script") {
    if (words.size() > 2) throw failure(bad_input, "script: expected at most one file");
    grove::node n({.threads = 1});
    if (words.size() == 2 && words[1] != "-") {
      std::ifstream in(words[1]);
      if (!in) throw failure(bad_input, "script: cannot read '" + words[1] + "'");
      return run_script(n, e, in, follow);
    }
    return run_script(n, e, std::cin, follow);
  }
  throw failure(bad_input, "unknown command '" + command + "' (expected call, cast, subscribe, script or tenant)");
}

} // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const failure& f) {
    std::cout << std::flush;
    std::cerr << "grovectl: " << f.what() << '\n';
    return f.code;
  } catch (const std::exception& ex) {
    std::cerr << "grovectl: " << ex.what() << '\n';
    return cannot_connect;
  }
}
