// grove/core/message.hpp — a type-erased, move-only message.
//
//   grove::message m = ping{42};
//   if (auto* p = m.get_if<ping>()) use(p->value);
//
// Small messages (up to 48 bytes, nothrow-movable) are stored inline, so
// sending them allocates nothing; larger ones go on the heap.
#pragma once

#include <cstddef>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace grove {
namespace detail {
[[noreturn]] void throw_wrong_message_type(const char* wanted, const char* held);
}

class message {
public:
  static constexpr std::size_t inline_size = 48;

  message() noexcept = default;

  template <class T, class D = std::decay_t<T>>
    requires(!std::is_same_v<D, message>)
  message(T&& value) { // NOLINT: implicit by design, like std::any
    if constexpr (stored_inline<D>) {
      ::new (static_cast<void*>(storage_)) D(std::forward<T>(value));
    } else {
      *reinterpret_cast<D**>(storage_) = new D(std::forward<T>(value));
    }
    ops_ = &ops_for<D>;
  }

  message(message&& other) noexcept : ops_(other.ops_) {
    if (ops_) {
      ops_->move(storage_, other.storage_);
      other.ops_ = nullptr;
    }
  }

  message& operator=(message&& other) noexcept {
    if (this != &other) {
      reset();
      if (other.ops_) {
        other.ops_->move(storage_, other.storage_);
        ops_ = other.ops_;
        other.ops_ = nullptr;
      }
    }
    return *this;
  }

  message(const message&) = delete;
  message& operator=(const message&) = delete;

  ~message() { reset(); }

  bool has_value() const noexcept { return ops_ != nullptr; }
  explicit operator bool() const noexcept { return has_value(); }

  template <class T>
  bool is() const noexcept {
    return ops_ && (ops_ == &ops_for<T> || ops_->type() == typeid(T));
  }

  template <class T>
  T* get_if() noexcept {
    return is<T>() ? address<T>() : nullptr;
  }
  template <class T>
  const T* get_if() const noexcept {
    return is<T>() ? const_cast<message*>(this)->address<T>() : nullptr;
  }

  /// The held T; throws grove::error (errc::invalid_argument, naming both
  /// types) if it holds something else.
  template <class T>
  T& get() {
    if (!is<T>()) detail::throw_wrong_message_type(typeid(T).name(), type_name());
    return *address<T>();
  }

  /// The held type (typeid(void) when empty).
  const std::type_info& type() const noexcept { return ops_ ? ops_->type() : typeid(void); }

  /// Name of the held type as the compiler spells it (for logs).
  const char* type_name() const noexcept { return ops_ ? ops_->type().name() : "empty"; }

  void reset() noexcept {
    if (ops_) {
      ops_->destroy(storage_);
      ops_ = nullptr;
    }
  }

private:
  struct operations {
    void (*move)(void* to, void* from) noexcept;
    void (*destroy)(void* at) noexcept;
    const std::type_info& (*type)() noexcept;
  };

  template <class T>
  static constexpr bool stored_inline = sizeof(T) <= inline_size &&
                                        alignof(T) <= alignof(std::max_align_t) &&
                                        std::is_nothrow_move_constructible_v<T>;

  template <class T>
  T* address() noexcept {
    if constexpr (stored_inline<T>) {
      return std::launder(reinterpret_cast<T*>(storage_));
    } else {
      return *reinterpret_cast<T**>(storage_);
    }
  }

  template <class T>
  static void move_op(void* to, void* from) noexcept {
    if constexpr (stored_inline<T>) {
      T* source = std::launder(reinterpret_cast<T*>(from));
      ::new (to) T(std::move(*source));
      source->~T();
    } else {
      *static_cast<T**>(to) = *static_cast<T**>(from);
    }
  }

  template <class T>
  static void destroy_op(void* at) noexcept {
    if constexpr (stored_inline<T>) {
      std::launder(reinterpret_cast<T*>(at))->~T();
    } else {
      delete *static_cast<T**>(at);
    }
  }

  template <class T>
  static const std::type_info& type_op() noexcept { return typeid(T); }

  template <class T>
  static constexpr operations ops_for{&move_op<T>, &destroy_op<T>, &type_op<T>};

  alignas(std::max_align_t) unsigned char storage_[inline_size];
  const operations* ops_ = nullptr;
};

} // namespace grove
