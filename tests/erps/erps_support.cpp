// The erps tests' test_server, compiled once.
#include "erps_support.hpp"

namespace erps_test {

test_server::test_server(json initial, std::shared_ptr<event_log> events)
    : data_(std::move(initial)), events_(std::move(events)) {}

test_server::~test_server() {
  for (auto& t : threads_) t.join();
}

grove::call_result<json> test_server::handle_call(grove::erps::call c, grove::from<json> from) {
  const json& r = c.request;
  const std::string op = r.value("op", "");
  if (op == "echo") return r.at("value");
  if (op == "get") return data_.value(r.at("key").get<std::string>(), json());
  if (op == "put") {
    data_[r.at("key").get<std::string>()] = r.at("value");
    return json(true);
  }
  if (op == "initial") return data_;
  if (op == "hold") { // answered by a later "release", last held first
    held_.emplace_back(from, r.at("value"));
    if (events_) events_->add("held " + r.at("value").dump());
    return grove::noreply;
  }
  if (op == "slow") { // answered by a timer after "ms"
    slow_.emplace_back(from, r.at("value"));
    grove::send_after(self(), std::chrono::milliseconds(r.at("ms").get<int>()), slow_done{slow_.size() - 1});
    if (events_) events_->add("held " + r.at("value").dump());
    return grove::noreply;
  }
  if (op == "release") {
    const auto n = held_.size();
    for (auto it = held_.rbegin(); it != held_.rend(); ++it) it->first.reply(it->second);
    held_.clear();
    return json(n);
  }
  if (op == "from_thread") { // the reply comes from another thread
    json value = r.at("value");
    threads_.emplace_back([from, value] { from.reply(value); });
    return grove::noreply;
  }
  if (op == "flood") { // many pushes for one small call
    for (int i = 0; i < r.at("count").get<int>(); ++i) push(r.at("value"));
    return json(true);
  }
  if (op == "push") return json(push(r.at("value"))); // false without a client
  if (op == "remote") return json(is_remote(from));
  if (op == "client") return json{{"has_client", has_client()}, {"pending", remote_calls_pending()}};
  if (op == "close") {
    close_connection("asked to close");
    return json(true);
  }
  if (op == "peer_subject") return json(peer_subject());
  if (op == "peer_alt_names") return json(peer_alt_names());
  if (op == "stop") return grove::call_result<json>(json("bye"), grove::stop());
  if (op == "stop_noreply") return grove::stop();
  if (op == "continue") return grove::call_result<json>(json(true), grove::continue_with(r.at("value")));
  if (op == "throw") throw std::runtime_error("asked to throw");
  if (op == "keep") { // answered at once, and its from kept
    kept_ = from;
    kept_.reply(r.at("value"));
    return grove::noreply;
  }
  if (op == "late") return json(kept_.reply(json("late"))); // false: that call was answered
  if (op == "deep") { // a reply "levels" arrays deep (past 1024, erps does not write it)
    json v = json::array();
    for (int i = 1; i < r.at("levels").get<int>(); ++i) v = json::array({std::move(v)});
    return v;
  }
  return json{{"error", "unknown op"}};
}

void test_server::handle_cast(grove::erps::cast c) {
  const json& r = c.request;
  if (r.value("op", "") == "put") data_[r.at("key").get<std::string>()] = r.at("value");
  if (r.value("op", "") == "push") push(r.at("value"));
  if (events_) events_->add("cast " + r.dump());
}

void test_server::handle_info(grove::message m) {
  if (auto* done = m.get_if<slow_done>()) slow_[done->index].first.reply(slow_[done->index].second);
}

void test_server::handle_continue(grove::message m) {
  if (auto* v = m.get_if<json>()) push(json{{"continued", *v}});
}

void test_server::terminate(const grove::exit_reason& reason) {
  if (events_) events_->add("terminate " + reason.to_string());
}

grove::awaitable<grove::erps::daemon> start_test_daemon(grove::node& n, grove::erps::daemon_options options,
                                                        json initial, std::shared_ptr<event_log> events) {
  return grove::erps::daemon::start<test_server>(n, std::move(options), std::move(initial), std::move(events));
}

} // namespace erps_test
