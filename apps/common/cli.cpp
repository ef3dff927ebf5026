#include "cli.hpp"

#include <grove/erps/etf.hpp>

#include <grove/core/error.hpp>

#include <charconv>
#include <cstring>
#include <iostream>

#ifndef GROVE_CERTS_DIR
#define GROVE_CERTS_DIR "certs"
#endif

namespace grove::cli {

struct connected_client::shared {
  enum class state : std::uint8_t { connecting, connected, failed, lost, reconnecting };

  std::mutex mutex;
  std::condition_variable changed;
  state now = state::connecting;
  std::string reason;      // why it failed or was lost
  std::string tls_problem; // a handshake failure the client logged
  std::string connect_problem; // why the last TCP connect failed, as the client logged it
  bool keep_pushes = false;
  bool ride_out = false;
  std::chrono::milliseconds retry_for{0};
  std::deque<erps::json> pushes; // and, when riding out drops, the link lines
  std::chrono::steady_clock::time_point down_since{};
  std::uint32_t attempts = 0;   // failed connects since the drop
  std::uint64_t reconnects = 0;
  std::string setup_failure;    // a setup call answered with an error
  bool tls = false;
  bool verbose = false;
};

namespace {

std::string value_of(int argc, char** argv, int& i, const std::string& flag, std::string_view arg) {
  if (auto eq = arg.find('='); eq != std::string_view::npos) return std::string(arg.substr(eq + 1));
  if (i + 1 >= argc) throw failure(bad_input, flag + ": expected a value");
  return argv[++i];
}

bool is_flag(std::string_view arg, std::string_view flag) {
  return arg == flag || (arg.size() > flag.size() && arg.substr(0, flag.size()) == flag && arg[flag.size()] == '=');
}

std::uint64_t number_of(const std::string& flag, const std::string& text, std::uint64_t lo, std::uint64_t hi) {
  std::uint64_t n = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, n);
  if (ec != std::errc{} || p != end || text.empty() || n < lo || n > hi) {
    throw failure(bad_input, flag + ": expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                                 ", got \"" + text + "\"");
  }
  return n;
}

// TLS errors that surface after the handshake (TLS 1.3 sends the server's
// verdict on our certificate with its first records) look like this.
bool looks_like_tls(const std::string& text) {
  for (const char* word : {"alert", "certificate", "handshake", "SSL", "ssl", "TLS", "tls"}) {
    if (text.find(word) != std::string::npos) return true;
  }
  return false;
}

} // namespace

bool parse_endpoint_flag(int argc, char** argv, int& i, endpoint& e) {
  const std::string_view arg = argv[i];
  if (is_flag(arg, "--host")) {
    e.host = value_of(argc, argv, i, "--host", arg);
    if (e.host.empty()) throw failure(bad_input, "--host: expected a host name or address");
  } else if (is_flag(arg, "--port")) {
    e.port = static_cast<std::uint16_t>(number_of("--port", value_of(argc, argv, i, "--port", arg), 1, 65535));
  } else if (arg == "--tls") {
    e.tls = true;
  } else if (is_flag(arg, "--ca")) {
    e.ca = value_of(argc, argv, i, "--ca", arg);
    e.tls = true;
  } else if (is_flag(arg, "--cert")) {
    e.certificate = value_of(argc, argv, i, "--cert", arg);
    e.tls = true;
  } else if (is_flag(arg, "--key")) {
    e.private_key = value_of(argc, argv, i, "--key", arg);
    e.tls = true;
  } else if (arg == "--no-cert") {
    e.certificate = "-";
    e.private_key = "-";
    e.tls = true;
  } else if (is_flag(arg, "--server-name")) {
    e.server_name = value_of(argc, argv, i, "--server-name", arg);
  } else if (is_flag(arg, "--identifier")) {
    e.identifier = value_of(argc, argv, i, "--identifier", arg);
  } else if (is_flag(arg, "--codec")) {
    e.codec = value_of(argc, argv, i, "--codec", arg);
    if (e.codec != "json" && e.codec != "etf") {
      throw failure(bad_input, "--codec: expected json or etf, got \"" + e.codec + "\"");
    }
  } else if (is_flag(arg, "--timeout")) {
    e.timeout = std::chrono::milliseconds(number_of("--timeout", value_of(argc, argv, i, "--timeout", arg), 1, 86'400'000));
  } else if (arg == "-v" || arg == "--verbose") {
    e.verbose = true;
  } else {
    return false;
  }
  return true;
}

const char* endpoint_help() {
  return "  --host HOST          daemon address or name (default 127.0.0.1)\n"
         "  --port PORT          daemon port (default 7400; 7401 with --tls)\n"
         "  --tls                use TLS; with no --ca/--cert/--key, the test CA and client\n"
         "                       certificate from the repository's certs/ (for groved's defaults)\n"
         "  --ca FILE            PEM CA the server's certificate must chain to (implies --tls)\n"
         "  --cert FILE          PEM client certificate for mutual TLS (implies --tls)\n"
         "  --key FILE           PEM private key of --cert (implies --tls)\n"
         "  --no-cert            TLS without a client certificate (implies --tls)\n"
         "  --server-name NAME   name the server's certificate must carry (default: --host)\n"
         "  --identifier ID      erps identifier sent in every frame (default empty)\n"
         "  --codec json|etf     payloads as JSON, or as Erlang terms as Elixir's erps sends them\n"
         "                       (requests and replies still read and print as JSON) (default json)\n"
         "  --timeout MS         connect, reply and push timeout in milliseconds (default 5000)\n"
         "  -v, --verbose        log the client's events on stderr\n";
}

namespace {

// The connection's state changes, as connected_client's states (and, when
// riding out drops, the link lines queued with the pushes).
void on_state_change(connected_client::shared& s, const connection_event& ev) {
  using state = connected_client::shared::state;
  const bool down = ev.state == connection_state::backing_off || ev.state == connection_state::disconnected;
  if (ev.state == connection_state::connected) {
    if (s.now == state::connecting) s.now = state::connected;
    if (s.now == state::reconnecting) {
      s.now = state::connected;
      ++s.reconnects;
      const auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - s.down_since);
      s.pushes.push_back(erps::json{{"link", "up"}, {"gap_ms", gap.count()}, {"attempts", s.attempts + 1}});
    }
  } else if (down) {
    if (s.now == state::connecting) {
      s.now = state::failed;
      s.reason = ev.reason;
    } else if (s.now == state::connected && s.ride_out) {
      s.now = state::reconnecting;
      s.down_since = std::chrono::steady_clock::now();
      s.attempts = 0;
      s.pushes.push_back(erps::json{{"link", "down"}, {"reason", ev.reason}});
    } else if (s.now == state::connected) {
      s.now = state::lost;
      s.reason = ev.reason;
    } else if (s.now == state::reconnecting && ev.previous == connection_state::connecting) {
      ++s.attempts;
    }
  }
  s.changed.notify_all();
}

bool is_error_answer(const erps::setup_reply& a) {
  return !a.reply || (a.reply->is_object() && a.reply->contains("ok") && (*a.reply)["ok"] == false);
}

} // namespace

std::shared_ptr<connected_client> connected_client::open(node& n, const endpoint& e, const open_options& how) {
  auto self = std::make_shared<connected_client>();
  auto s = std::make_shared<shared>();
  s->keep_pushes = how.keep_pushes;
  s->ride_out = how.ride_out_drops;
  s->retry_for = how.retry_for;
  s->tls = e.tls;
  s->verbose = e.verbose;
  self->shared_ = s;

  erps::client_options o;
  o.host = e.host;
  o.port = e.port != 0 ? e.port : (e.tls ? 7401 : 7400);
  o.link.identifier = e.identifier;
  if (e.codec == "etf") o.link.codec = &erps::etf::etf_codec();
  if (e.tls) {
    const std::string dir = GROVE_CERTS_DIR;
    erps::tls_client_options t;
    t.ca_file = e.ca.empty() ? dir + "/ca.pem" : e.ca;
    if (e.certificate != "-") {
      t.certificate_file = e.certificate.empty() ? dir + "/client.pem" : e.certificate;
      t.private_key_file = e.private_key.empty() ? dir + "/client.key" : e.private_key;
    }
    t.server_name = e.server_name;
    t.handshake_timeout = e.timeout;
    o.tls = t;
  }
  o.connection.connect_timeout = e.timeout;
  o.connection.calls_while_disconnected = how.ride_out_drops ? when_not_ready::wait : when_not_ready::fail;
  if (how.ride_out_drops) {
    o.connection.backoff = backoff_policy::exponential(
        {.initial = std::chrono::milliseconds(100), .multiplier = 2.0, .jitter = 0.1, .max = std::chrono::seconds(2)});
  }
  o.connection.on_event = [s](const connection_event& ev) {
    std::lock_guard lock(s->mutex);
    on_state_change(*s, ev);
  };
  if (!how.setup_calls.empty()) {
    o.setup_calls = [calls = how.setup_calls] { return calls; };
    o.on_setup_reply = [s](const erps::setup_reply& a) {
      if (!is_error_answer(a)) return;
      std::lock_guard lock(s->mutex);
      if (s->setup_failure.empty()) {
        s->setup_failure = a.reply ? a.reply->dump() : a.error;
        s->changed.notify_all();
      }
    };
  }
  o.on_push = [s](const erps::json& value) {
    if (!s->keep_pushes) return;
    std::lock_guard lock(s->mutex);
    s->pushes.push_back(value);
    s->changed.notify_all();
  };
  o.link.log = [s](const erps::log_record& r) {
    if (r.event == "handshake_failed") {
      std::lock_guard lock(s->mutex);
      s->tls_problem = std::string(r.text);
    } else if (r.event == "connect_failed") {
      std::lock_guard lock(s->mutex);
      s->connect_problem = std::string(r.text);
    }
    if (s->verbose) {
      std::cerr << "grovectl: [" << erps::to_string(r.level) << "] " << r.event << ' ' << r.peer << ' ' << r.text
                << '\n';
    }
  };
  try {
    self->ref_ = n.block_on(erps::client::start(n, std::move(o)));
  } catch (const grove::error& ex) {
    if (ex.code() != grove::errc::invalid_argument) throw;
    throw failure(bad_input, ex.what());
  }

  std::unique_lock lock(s->mutex);
  const bool settled = s->changed.wait_for(lock, e.timeout + std::chrono::seconds(1),
                                           [&] { return s->now != shared::state::connecting; });
  if (!settled) {
    throw failure(timed_out, "no connection to " + e.host + " within " + std::to_string(e.timeout.count()) + " ms");
  }
  if (s->now == shared::state::connected) return self;
  const std::string where = e.host + ":" + std::to_string(e.port != 0 ? e.port : (e.tls ? 7401 : 7400));
  if (!s->tls_problem.empty()) throw failure(tls_failure, "TLS handshake with " + where + " failed: " + s->tls_problem);
  if (e.tls && looks_like_tls(s->reason)) {
    // TLS 1.3: the server's verdict on our certificate arrives after our side of the handshake.
    throw failure(tls_failure, "TLS with " + where + " failed: " + s->reason);
  }
  if (s->reason.find("timed out") != std::string::npos) {
    throw failure(timed_out, "cannot connect to " + where + ": " + s->reason);
  }
  const std::string& why = s->connect_problem.empty() ? s->reason : s->connect_problem;
  throw failure(cannot_connect, "cannot connect to " + where + ": " + why);
}

namespace {

// With the lock held, once the wait is over: the next push, nothing, or the
// lost link as a failure.
std::optional<erps::json> pop_push(connected_client::shared& s, bool stopped) {
  if (!s.setup_failure.empty()) throw failure(remote_error, "the daemon refused the setup call: " + s.setup_failure);
  if (!s.pushes.empty()) {
    erps::json v = std::move(s.pushes.front());
    s.pushes.pop_front();
    return v;
  }
  if (stopped || s.now == connected_client::shared::state::connected ||
      s.now == connected_client::shared::state::reconnecting) {
    return std::nullopt;
  }
  const bool tls = s.tls && looks_like_tls(s.reason);
  throw failure(tls ? tls_failure : cannot_connect, std::string(tls ? "TLS failure, " : "") + "connection lost: " + s.reason);
}

} // namespace

std::optional<erps::json> connected_client::take_push(std::chrono::milliseconds timeout) {
  std::unique_lock lock(shared_->mutex);
  shared_->changed.wait_for(lock, timeout,
                            [&] { return !shared_->pushes.empty() || shared_->now != shared::state::connected; });
  return pop_push(*shared_, false);
}

std::optional<erps::json> connected_client::take_push_until(const std::function<bool()>& stop) {
  std::unique_lock lock(shared_->mutex);
  shared& s = *shared_;
  auto ready = [&] {
    return !s.pushes.empty() || !s.setup_failure.empty() || stop() ||
           (s.now != shared::state::connected && s.now != shared::state::reconnecting);
  };
  while (!ready()) {
    if (s.now != shared::state::reconnecting || s.retry_for.count() == 0) {
      s.changed.wait(lock);
      continue;
    }
    // Down: wait no longer than what is left of retry_for.
    if (!s.changed.wait_until(lock, s.down_since + s.retry_for, ready) && s.now == shared::state::reconnecting) {
      throw failure(cannot_connect, "connection lost and not made again within " + std::to_string(s.retry_for.count()) +
                                        " ms (--retry-for)");
    }
  }
  return pop_push(s, stop());
}

std::uint64_t connected_client::reconnects() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->reconnects;
}

void connected_client::notify() {
  std::lock_guard lock(shared_->mutex);
  shared_->changed.notify_all();
}

void connected_client::rethrow(const std::exception& e) const {
  if (auto* g = dynamic_cast<const grove::error*>(&e)) {
    if (g->code() == errc::timeout) throw failure(timed_out, "no reply within the timeout");
    if (g->code() == erps_errc::remote) throw failure(remote_error, std::string("the daemon refused the request: ") + e.what());
    if (g->code() == erps_errc::bad_payload) {
      // Ours (a request nested too deep to send), or the daemon's (a reply we refuse to read).
      const bool ours = std::string_view(e.what()).find("the request could not be written") != std::string_view::npos;
      throw failure(ours ? bad_input : remote_error, e.what());
    }
    if (g->code() == connection_errc::disconnected) {
      std::string reason;
      {
        std::lock_guard lock(shared_->mutex);
        reason = shared_->reason;
      }
      if (reason.empty()) reason = e.what();
      const bool tls = shared_->tls && looks_like_tls(reason);
      throw failure(tls ? tls_failure : cannot_connect, std::string(tls ? "TLS failure, " : "") + "connection lost: " + reason);
    }
  }
  throw failure(cannot_connect, e.what());
}

erps::json parse_json_argument(const std::string& text, const std::string& what) {
  erps::json v = erps::json::parse(text, nullptr, false);
  if (v.is_discarded()) throw failure(bad_input, what + ": not valid JSON: " + text);
  return v;
}

} // namespace grove::cli
