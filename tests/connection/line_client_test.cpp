#include "line_client.hpp"

#include <grove/core/node.hpp>
#include <grove/core/testing.hpp>

#include "../event_log.hpp"
#include "../readme_check.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <doctest/doctest.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>

using namespace std::chrono_literals;
using namespace boost::asio::experimental::awaitable_operators;
using test_support::event_log;

namespace {

/// A real line server on 127.0.0.1, on its own thread and io_context:
/// answers "echo:LINE" to each line, except lines starting with "silent",
/// which it never answers. close() shuts the listener and every link;
/// open(port) listens again (on the same port, to test reconnection).
class line_server {
  using tcp = boost::asio::ip::tcp;

public:
  line_server() : work_(io_.get_executor()), thread_([this] { io_.run(); }) {}

  ~line_server() {
    close();
    work_.reset();
    thread_.join();
  }

  /// Runs `f` on the server thread and returns its result.
  template <class F>
  auto on_io(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return result.get();
  }

  unsigned short open(unsigned short port = 0) {
    return on_io([this, port] {
      acceptor_.emplace(io_);
      tcp::endpoint at(boost::asio::ip::make_address("127.0.0.1"), port);
      acceptor_->open(at.protocol());
      acceptor_->set_option(tcp::acceptor::reuse_address(true));
      acceptor_->bind(at);
      acceptor_->listen();
      boost::asio::co_spawn(io_, accept_loop(this), boost::asio::detached);
      return acceptor_->local_endpoint().port();
    });
  }

  void close() {
    on_io([this] {
      boost::system::error_code ignored;
      if (acceptor_) acceptor_->close(ignored);
      for (auto& s : sessions_) s->close(ignored);
      sessions_.clear();
      return 0;
    });
  }

  int accepted() {
    return on_io([this] { return accepted_; });
  }

  /// Waits (bounded) until `n` lines have arrived in all.
  bool wait_lines(int n) {
    std::unique_lock lock(lines_mutex_);
    return lines_cv_.wait_for(lock, 20s, [&] { return lines_ >= n; });
  }

private:
  static grove::awaitable<void> accept_loop(line_server* self) {
    for (;;) {
      auto [error, socket] = co_await self->acceptor_->async_accept(boost::asio::as_tuple(boost::asio::use_awaitable));
      if (error) co_return; // closed
      auto session = std::make_shared<tcp::socket>(std::move(socket));
      self->sessions_.insert(session);
      ++self->accepted_;
      boost::asio::co_spawn(self->io_, serve(self, session), boost::asio::detached);
    }
  }

  static grove::awaitable<void> serve(line_server* self, std::shared_ptr<tcp::socket> socket) {
    std::string buffer;
    for (;;) {
      auto [error, n] = co_await boost::asio::async_read_until(*socket, boost::asio::dynamic_buffer(buffer), '\n',
                                                               boost::asio::as_tuple(boost::asio::use_awaitable));
      if (error) co_return;
      std::string line = buffer.substr(0, n - 1);
      buffer.erase(0, n);
      self->received();
      if (line.rfind("silent", 0) == 0) continue;
      std::string reply = "echo:" + line + "\n";
      auto [write_error, written] =
          co_await boost::asio::async_write(*socket, boost::asio::buffer(reply), boost::asio::as_tuple(boost::asio::use_awaitable));
      (void)written;
      if (write_error) co_return;
    }
  }

  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
  std::optional<tcp::acceptor> acceptor_;
  std::set<std::shared_ptr<tcp::socket>> sessions_;
  int accepted_ = 0;
  std::mutex lines_mutex_;
  std::condition_variable lines_cv_;
  int lines_ = 0;

  void received() {
    std::lock_guard lock(lines_mutex_);
    ++lines_;
    lines_cv_.notify_all();
  }
};

std::error_code call_error(grove::node& node, grove::server_ref<line::client> client, std::string text) {
  line::send_line request{std::move(text)};
  return node.block_on(grove::testing::error_of(client.call(std::move(request))));
}

std::string call(grove::node& node, grove::server_ref<line::client> client, std::string text) {
  line::send_line request{std::move(text)};
  return node.block_on(client.call(std::move(request)));
}

grove::connection_options logged(const std::shared_ptr<event_log>& log) {
  grove::connection_options o;
  o.backoff = grove::backoff_policy::constant(5ms); // retry often: the test waits on events, not on time
  o.on_event = [log](const grove::connection_event& e) { log->add(std::string(grove::to_string(e.state))); };
  return o;
}

/// A line server, a node and a line client connected to it. (Members in
/// this order: the node, and the client in it, go before the server.)
struct rig {
  line_server server;
  unsigned short port = server.open();
  std::shared_ptr<event_log> log = std::make_shared<event_log>();
  grove::node node{{.threads = 2}};
  grove::server_ref<line::client> client = node.block_on(grove::start<line::client>(
      node, line::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port), logged(log)));
};

grove::awaitable<void> reopen(line_server* server, unsigned short port) {
  server->open(port);
  co_return;
}

} // namespace

TEST_CASE("the_line_client_fails_calls_while_the_server_is_down_and_reconnects_when_it_is_back") {
  rig r;
  auto& [server, port, log, node, client] = r;

  CHECK(call(node, client, "hello") == "echo:hello");
  CHECK(call(node, client, "again") == "echo:again");

  server.close();
  REQUIRE(log->wait_count("disconnected", 1));
  REQUIRE(log->wait_count("backing_off", 1)); // refused: nobody listens

  // While down, calls fail at once.
  CHECK(call_error(node, client, "anyone?") == grove::connection_errc::disconnected);

  // The server comes back on the same port; the client reconnects by itself.
  server.open(port);
  REQUIRE(log->wait_count("connected", 2));
  CHECK(call(node, client, "back") == "echo:back");
  CHECK(server.accepted() == 2);
}

TEST_CASE("a_call_that_waits_for_the_connection_is_sent_once_the_server_is_back") {
  rig r;
  auto& [server, port, log, node, client] = r;
  CHECK(call(node, client, "hello") == "echo:hello");

  server.close();
  REQUIRE(log->wait_count("backing_off", 1));

  // The call reaches the client while it is down (`&&` sends it before the
  // server reopens); it waits instead of failing, and goes out on the new link.
  grove::call_options wait;
  wait.if_not_ready = grove::when_not_ready::wait;
  wait.timeout = 20s;
  line::send_line request{"patient"};
  std::string reply = node.block_on(client.call(std::move(request), wait) && reopen(&server, port));
  CHECK(reply == "echo:patient");
  CHECK(log->count("connected") == 2);
}

TEST_CASE("a_call_in_flight_fails_with_disconnected_when_the_link_drops") {
  rig r;
  auto& [server, port, log, node, client] = r;
  REQUIRE(log->wait_count("connected", 1));

  // The server never answers "silent"; once it has the line, closing it
  // drops the link under the waiting call.
  // (r's members, not the bindings: clang 14 cannot capture structured bindings.)
  auto pending = std::async(std::launch::async, [&r] { return call_error(r.node, r.client, "silent"); });
  REQUIRE(server.wait_lines(1));
  server.close();
  CHECK(pending.get() == grove::connection_errc::disconnected);
  REQUIRE(log->wait_count("disconnected", 1));
}

TEST_CASE("the_readme_shows_the_line_client") {
  CHECK(readme_check::readme_holds_example_of("tests/connection/line_client.hpp"));
}
