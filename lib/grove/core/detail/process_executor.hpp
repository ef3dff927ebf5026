// Internal (not installed): the executor a process's coroutine runs on.
//
// It is the worker's io_context executor plus the identity of the process
// (table slot and serial: 24 bytes, within any_io_executor's inline storage,
// so copying it allocates nothing). Everything it runs, every resumption of
// the process's coroutine included, runs with this_process_context set, which
// is how `co_await ref.call(x)` knows who is calling without the user passing
// it. An identity whose process has exited resolves to "no process".
#pragma once

#include <grove/core/detail/runtime.hpp>

#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>

#include <type_traits>
#include <utility>

namespace grove::detail {

template <class Inner>
class basic_process_executor {
public:
  basic_process_executor(Inner inner, process_table::slot* slot, std::uint64_t serial) noexcept
      : inner_(std::move(inner)), slot_(slot), serial_(serial) {}

  template <class Property>
    requires asio::can_query<const Inner&, const Property&>::value
  decltype(auto) query(const Property& p) const
      noexcept(asio::is_nothrow_query<const Inner&, const Property&>::value) {
    return asio::query(inner_, p);
  }

  template <class Property>
    requires asio::can_require<const Inner&, const Property&>::value
  auto require(const Property& p) const {
    using next = std::decay_t<decltype(asio::require(inner_, p))>;
    return basic_process_executor<next>(asio::require(inner_, p), slot_, serial_);
  }

  template <class Property>
    requires asio::can_prefer<const Inner&, const Property&>::value
  auto prefer(const Property& p) const {
    using next = std::decay_t<decltype(asio::prefer(inner_, p))>;
    return basic_process_executor<next>(asio::prefer(inner_, p), slot_, serial_);
  }

  template <class F>
  void execute(F&& f) const {
    // A post from the worker's own thread (a process resumed by mail or a
    // reply, a yield) goes to the worker's ready queue (worker::ready), so
    // many resumptions run between two polls of the reactor. What the
    // executor may run inline still runs inline.
    if (worker* w = this_worker; w && &asio::query(inner_, asio::execution::context) == w->io.get() &&
                                 asio::query(inner_, asio::execution::blocking) == asio::execution::blocking.never) {
      asio::post(*w->ready, in_process<std::decay_t<F>>{slot_, serial_, std::forward<F>(f)});
      w->queue_drain();
      return;
    }
    inner_.execute(in_process<std::decay_t<F>>{slot_, serial_, std::forward<F>(f)});
  }

  friend bool operator==(const basic_process_executor& a, const basic_process_executor& b) noexcept {
    return a.inner_ == b.inner_ && a.slot_ == b.slot_ && a.serial_ == b.serial_;
  }
  friend bool operator!=(const basic_process_executor& a, const basic_process_executor& b) noexcept {
    return !(a == b);
  }

private:
  template <class F>
  struct in_process {
    process_table::slot* slot;
    std::uint64_t serial;
    F f;
    void operator()() {
      current_context saved = this_process_context;
      this_process_context = {slot, serial};
      struct restore {
        current_context saved;
        ~restore() { this_process_context = saved; }
      } restore_on_exit{saved};
      f();
    }
  };

  template <class>
  friend class basic_process_executor;

  Inner inner_;
  process_table::slot* slot_;
  std::uint64_t serial_;
};

using process_executor = basic_process_executor<asio::io_context::executor_type>;

} // namespace grove::detail
