// grove/core/testing.hpp — small helpers for tests against grove's API.
//
//   CHECK(co_await grove::testing::error_of(ref.call(get{})) == grove::errc::timeout);
//   auto r = co_await grove::testing::capture(ref.call(get{}));
//   if (r) use(*r); else CHECK(r.error() == grove::connection_errc::disconnected);
//
// Checking an error across co_await otherwise takes a try/catch in every
// test; these turn what a grove operation threw into a value.
#pragma once

#include <grove/core/error.hpp>

#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace grove::testing {

/// What an operation gave: its value (none for void), or the code and text
/// of the grove::error it threw. Other exceptions pass through.
template <class T>
class result {
public:
  using value_type = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

  explicit operator bool() const noexcept { return !error_; }
  const std::error_code& error() const noexcept { return error_; }
  /// The error's what(), empty on success.
  const std::string& what() const noexcept { return what_; }
  value_type& operator*() { return *value_; }
  value_type* operator->() { return &*value_; }

  static result success(value_type v) {
    result r;
    r.value_.emplace(std::move(v));
    return r;
  }
  static result failure(const grove::error& e) {
    result r;
    r.error_ = e.code();
    r.what_ = e.what();
    return r;
  }

private:
  std::optional<value_type> value_;
  std::error_code error_;
  std::string what_;
};

/// Awaits `work` and returns what it gave as a result.
template <class T>
boost::asio::awaitable<result<T>> capture(boost::asio::awaitable<T> work) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(work);
      co_return result<T>::success({});
    } else {
      co_return result<T>::success(co_await std::move(work));
    }
  } catch (const grove::error& e) {
    co_return result<T>::failure(e);
  }
}

/// Awaits `work`; the code of the grove::error it threw, or an empty code.
template <class T>
boost::asio::awaitable<std::error_code> error_of(boost::asio::awaitable<T> work) {
  result<T> r = co_await capture(std::move(work));
  co_return r.error();
}

} // namespace grove::testing
