// Test support: the next message of one type a process receives, within a
// bounded wait (others are skipped).
#pragma once

#include <grove/core/process.hpp>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <typeinfo>

namespace test_support {

template <class T>
grove::awaitable<T> next_message(grove::process& self) {
  for (;;) {
    auto m = co_await self.receive_for(std::chrono::seconds(20));
    if (!m) throw std::runtime_error(std::string("no ") + typeid(T).name() + " message within 20 s");
    if (auto* value = m->template get_if<T>()) co_return std::move(*value);
  }
}

} // namespace test_support
