// A TCP line client on grove::connection: Connection's tcp_connection
// example, done properly. It connects at start, notices a closed link at
// once (a reader coroutine, not the next send), fails the calls in flight
// with connection_errc::disconnected, and reconnects by itself with backoff. The
// README shows this file's marked part.
#pragma once

#include <grove/connection/connection.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <deque>
#include <memory>
#include <string>

namespace line {

// --- README example begins
namespace asio = boost::asio;
using asio::ip::tcp;

struct send_line { // one line out, the server's next line back
  using reply_type = std::string;
  std::string text;
};

class client : public grove::connection {
public:
  client(tcp::endpoint server, grove::connection_options options)
      : grove::connection(std::move(options)), server_(server) {}
  ~client() override { close(); }

  grove::action init() { return grove::connect(); } // before any call is handled

  grove::awaitable<grove::connect_result> connect(grove::message) {
    auto socket = std::make_shared<tcp::socket>(co_await asio::this_coro::executor);
    auto [error] = co_await socket->async_connect(server_, asio::as_tuple(asio::use_awaitable));
    if (error) co_return grove::backoff(); // the policy's next delay
    socket_ = socket;
    asio::co_spawn(socket->get_executor(), read_lines(socket, self(), ++link_), asio::detached);
    co_return grove::connect_result{}; // connected
  }

  grove::disconnect_result disconnect(grove::message) {
    close();
    for (auto& waiting : waiting_) waiting.fail(grove::connection_errc::disconnected);
    waiting_.clear();
    return grove::connect(); // at once; if that fails, connect() backs off
  }

  grove::awaitable<grove::call_result<std::string>> handle_call(send_line line, grove::from<std::string> reply) {
    line.text += '\n';
    auto [error, n] = co_await asio::async_write(*socket_, asio::buffer(line.text), asio::as_tuple(asio::use_awaitable));
    if (error) {
      reply.fail(grove::connection_errc::disconnected);
      co_return grove::call_result<std::string>(grove::noreply, grove::disconnect(error));
    }
    waiting_.push_back(reply); // answered in order by handle_info
    co_return grove::noreply;
  }

  grove::action handle_info(grove::message m) {
    if (auto* in = m.get_if<line_in>(); in && in->link == link_ && !waiting_.empty()) {
      waiting_.front().reply(std::move(in->text));
      waiting_.pop_front();
    } else if (auto* closed = m.get_if<link_closed>(); closed && closed->link == link_ && socket_) {
      return grove::disconnect(closed->error);
    }
    return {}; // (lines and closes of an earlier link are stale)
  }

private:
  struct line_in {
    std::string text;
    unsigned link;
  };
  struct link_closed {
    boost::system::error_code error;
    unsigned link;
  };

  // Reads lines while the link lives and tells the connection; owns its
  // socket, so it never touches the connection object.
  static grove::awaitable<void> read_lines(std::shared_ptr<tcp::socket> socket, grove::pid owner, unsigned link) {
    std::string buffer;
    for (;;) {
      auto [error, n] =
          co_await asio::async_read_until(*socket, asio::dynamic_buffer(buffer), '\n', asio::as_tuple(asio::use_awaitable));
      if (error) {
        grove::send(owner, link_closed{error, link});
        co_return;
      }
      grove::send(owner, line_in{buffer.substr(0, n - 1), link});
      buffer.erase(0, n);
    }
  }

  void close() {
    if (!socket_) return;
    boost::system::error_code ignored;
    socket_->close(ignored); // the reader ends with operation_aborted
    socket_.reset();
  }

  tcp::endpoint server_;
  std::shared_ptr<tcp::socket> socket_;
  std::deque<grove::from<std::string>> waiting_;
  unsigned link_ = 0;
};
// --- README example ends

} // namespace line
