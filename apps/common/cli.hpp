// What grovectl and grove-bench share: the flags that say where the daemon
// is and how to reach it, and a client that reports why it could not
// connect (refused, TLS, timeout) instead of retrying forever.
#pragma once

#include <grove/core/node.hpp>
#include <grove/erps/client.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace grove::cli {

/// Exit codes, the same for every app.
enum exit_code : int {
  ok = 0,
  remote_error = 1,   ///< the daemon answered with an error
  bad_input = 2,      ///< usage, a flag, or JSON the program was given
  cannot_connect = 3, ///< refused, unreachable, or the connection was lost
  tls_failure = 4,    ///< the TLS handshake failed (certificate, CA, name, protocol)
  timed_out = 5,      ///< no answer (or push) within the timeout
  expectation = 6,    ///< grovectl script: a reply or push did not match "expect"
};

/// A failure that ends the program with `code` and a one-line reason.
struct failure : std::runtime_error {
  failure(exit_code c, const std::string& why) : std::runtime_error(why), code(c) {}
  exit_code code;
};

struct endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0; // 0: 7400, or 7401 with --tls
  bool tls = false;
  std::string ca;          // default: the repository's test CA
  std::string certificate; // default: the repository's test client certificate
  std::string private_key;
  std::string server_name;
  std::string identifier;
  std::string codec = "json"; // or "etf"
  std::chrono::milliseconds timeout{5000};
  bool verbose = false;
};

/// If argv[i] is one of the endpoint flags, consumes it (and its value) and
/// returns true. Throws failure(bad_input) for a bad value.
bool parse_endpoint_flag(int argc, char** argv, int& i, endpoint& e);
/// The endpoint flags, for --help.
const char* endpoint_help();

/// How a connected_client behaves past its first connect.
struct open_options {
  bool keep_pushes = false; ///< queue pushes for take_push()
  /// Ride out a dropped link: reconnect by backoff (100 ms doubling to 2 s)
  /// instead of failing, and queue a line for each drop and return among
  /// the pushes: {"link":"down","reason":R} and
  /// {"link":"up","gap_ms":N,"attempts":K}. Calls made while it is down
  /// wait for it (up to their timeout).
  bool ride_out_drops = false;
  /// With ride_out_drops: a link down longer than this fails take_push with
  /// cannot_connect (0: try until stopped).
  std::chrono::milliseconds retry_for{0};
  /// Made first on every link (client_options::setup_calls); an answer that
  /// is an error ({"ok":false} or a refusal) fails take_push with remote_error.
  std::vector<erps::json> setup_calls{};
};

/// One connected erps client on `n`. Pushes are queued for take_push().
class connected_client {
public:
  /// Connects and waits for the link (or its failure), at most e.timeout.
  /// Throws failure(cannot_connect | tls_failure | timed_out).
  static std::shared_ptr<connected_client> open(node& n, const endpoint& e, const open_options& how);

  erps::client_ref ref() const { return ref_; }

  /// The next push, waiting at most `timeout`; nullopt on timeout. Throws
  /// failure(cannot_connect) if the link is lost while waiting.
  std::optional<erps::json> take_push(std::chrono::milliseconds timeout);
  /// Waits for a push or for `stop` to turn true (checked when notify() is called).
  std::optional<erps::json> take_push_until(const std::function<bool()>& stop);
  void notify();
  /// Links made again after a drop (ride_out_drops).
  std::uint64_t reconnects() const;

  /// Turns an error from a call into the failure the program exits with.
  [[noreturn]] void rethrow(const std::exception& e) const;

  struct shared; // state shared with the client's callbacks

private:
  erps::client_ref ref_;
  std::shared_ptr<shared> shared_;
};

/// A JSON argument, or failure(bad_input) naming `what`.
erps::json parse_json_argument(const std::string& text, const std::string& what);

} // namespace grove::cli
