// The servers and messages the dist tests use on both nodes: the test
// program (node 1) and tests/dist/dist_peer.cpp (node 2), which register
// them under the same names.
#pragma once

#include <grove/dist/dist.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace dist_test {

struct echo {
  using reply_type = std::string;
  std::string text;
};
struct crash {
  using reply_type = std::string;
};
struct never_answer { // the server keeps the call and never answers it
  using reply_type = int;
};
struct release_kept { // answers the never_answer calls kept so far (late replies); how many
  using reply_type = int;
};
struct note {
  std::string text;
};
struct get_notes {
  using reply_type = std::vector<std::string>;
};
struct stop_with { // the server stops with {shutdown, why} after replying
  using reply_type = bool;
  std::string why;
};
struct watch { // monitors `target`, sends pong{1} to `notify`; answers with the down's reason once it comes
  using reply_type = std::string;
  grove::pid target;
  grove::pid notify;
};
struct link_to { // links to `target` (the server traps exits)
  using reply_type = bool;
  grove::pid target;
};
struct exits_seen {
  using reply_type = std::vector<std::string>;
};
struct ping { // sent to a pinger: it sends pong{n} to `from`
  grove::pid from;
  int n = 0;
};
struct pong {
  int n = 0;
};
struct not_registered {
  using reply_type = int;
};

inline void to_json(nlohmann::json& j, const echo& v) { j = v.text; }
inline void from_json(const nlohmann::json& j, echo& v) { v.text = j.get<std::string>(); }
inline void to_json(nlohmann::json& j, const crash&) { j = nullptr; }
inline void from_json(const nlohmann::json&, crash&) {}
inline void to_json(nlohmann::json& j, const never_answer&) { j = nullptr; }
inline void from_json(const nlohmann::json&, never_answer&) {}
inline void to_json(nlohmann::json& j, const release_kept&) { j = nullptr; }
inline void from_json(const nlohmann::json&, release_kept&) {}
inline void to_json(nlohmann::json& j, const note& v) { j = v.text; }
inline void from_json(const nlohmann::json& j, note& v) { v.text = j.get<std::string>(); }
inline void to_json(nlohmann::json& j, const get_notes&) { j = nullptr; }
inline void from_json(const nlohmann::json&, get_notes&) {}
inline void to_json(nlohmann::json& j, const stop_with& v) { j = v.why; }
inline void from_json(const nlohmann::json& j, stop_with& v) { v.why = j.get<std::string>(); }
inline void to_json(nlohmann::json& j, const watch& v) { j = {v.target, v.notify}; }
inline void from_json(const nlohmann::json& j, watch& v) {
  v.target = j.at(0).get<grove::pid>();
  v.notify = j.at(1).get<grove::pid>();
}
inline void to_json(nlohmann::json& j, const link_to& v) { j = v.target; }
inline void from_json(const nlohmann::json& j, link_to& v) { v.target = j.get<grove::pid>(); }
inline void to_json(nlohmann::json& j, const exits_seen&) { j = nullptr; }
inline void from_json(const nlohmann::json&, exits_seen&) {}
inline void to_json(nlohmann::json& j, const ping& v) { j = {{"from", v.from}, {"n", v.n}}; }
inline void from_json(const nlohmann::json& j, ping& v) {
  v.from = j.at("from").get<grove::pid>();
  v.n = j.at("n").get<int>();
}
inline void to_json(nlohmann::json& j, const pong& v) { j = v.n; }
inline void from_json(const nlohmann::json& j, pong& v) { v.n = j.get<int>(); }
inline void to_json(nlohmann::json& j, const not_registered&) { j = nullptr; }
inline void from_json(const nlohmann::json&, not_registered&) {}

/// The server the peer runs, and the test runs too (for calls the other way).
class service : public grove::gen_server {
public:
  grove::action init() {
    this_process().trap_exit(true);
    return {};
  }
  std::string handle_call(echo e) { return e.text; }
  std::string handle_call(crash) { throw std::runtime_error("asked to crash"); }
  grove::call_result<int> handle_call(never_answer, grove::from<int> f) {
    kept_.push_back(f);
    return grove::noreply;
  }
  int handle_call(release_kept) {
    for (auto& f : kept_) f.reply(7);
    const int n = static_cast<int>(kept_.size());
    kept_.clear();
    return n;
  }
  void handle_cast(note n) { notes_.push_back(n.text); }
  std::vector<std::string> handle_call(get_notes) { return notes_; }
  grove::call_result<bool> handle_call(stop_with s) {
    return grove::call_result<bool>(true, grove::stop(grove::exit_reason::shutdown(s.why)));
  }
  grove::call_result<std::string> handle_call(watch w, grove::from<std::string> f) {
    watches_.emplace_back(this_process().monitor(w.target), f);
    grove::send(w.notify, pong{1});
    return grove::noreply;
  }
  bool handle_call(link_to l) {
    this_process().link(l.target);
    return true;
  }
  std::vector<std::string> handle_call(exits_seen) { return exits_; }
  int handle_call(not_registered) { return 1; }
  void handle_info(grove::message m) {
    if (auto* d = m.get_if<grove::down_message>()) {
      for (auto it = watches_.begin(); it != watches_.end(); ++it) {
        if (it->first == d->ref) {
          it->second.reply(d->reason.to_string());
          watches_.erase(it);
          break;
        }
      }
    } else if (auto* e = m.get_if<grove::exit_message>()) {
      exits_.push_back(e->reason.to_string());
    } else if (auto* p = m.get_if<ping>()) {
      grove::send(p->from, pong{p->n});
    }
  }

private:
  std::vector<grove::from<int>> kept_;
  std::vector<std::string> notes_;
  std::vector<std::pair<grove::monitor_ref, grove::from<std::string>>> watches_;
  std::vector<std::string> exits_;
};

/// Mutual TLS between nodes with the test certificates in `certs`.
inline void use_test_tls(grove::dist::options& o, const std::string& certs) {
  o.tls_server = grove::erps::tls_server_options{
      .certificate_file = certs + "/server.pem", .private_key_file = certs + "/server.key", .ca_file = certs + "/ca.pem"};
  o.tls_client = grove::erps::tls_client_options{.ca_file = certs + "/ca.pem",
                                                 .certificate_file = certs + "/client.pem",
                                                 .private_key_file = certs + "/client.key",
                                                 .server_name = "localhost"};
}

inline void register_types() {
  grove::dist::register_call<service, echo>("test.echo");
  grove::dist::register_call<service, crash>("test.crash");
  grove::dist::register_call<service, never_answer>("test.never_answer");
  grove::dist::register_call<service, release_kept>("test.release_kept");
  grove::dist::register_cast<service, note>("test.note");
  grove::dist::register_call<service, get_notes>("test.get_notes");
  grove::dist::register_call<service, stop_with>("test.stop_with");
  grove::dist::register_call<service, watch>("test.watch");
  grove::dist::register_call<service, link_to>("test.link_to");
  grove::dist::register_call<service, exits_seen>("test.exits_seen");
  grove::dist::register_message<ping>("test.ping");
  grove::dist::register_message<pong>("test.pong");
}

} // namespace dist_test
