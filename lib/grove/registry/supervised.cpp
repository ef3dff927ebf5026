#include <grove/registry/supervised.hpp>

#include <exception>

namespace grove {

namespace detail {

awaitable<pid> start_registered(registry& r, std::string name, child_start start, node& n, extra_arguments extra,
                                bool fail_if_taken) {
  if (name.empty()) throw grove::error(errc::invalid_argument, "a registered name must not be empty");
  const name_claim claim = co_await r.claim(name);
  if (!claim.granted) {
    if (fail_if_taken) {
      throw grove::error(registry_errc::already_registered, "'" + name + "' is held by " + claim.holder.to_string());
    }
    co_return claim.holder;
  }
  pid started;
  std::exception_ptr failure;
  try {
    started = co_await start(n, extra);
  } catch (...) {
    failure = std::current_exception();
  }
  // Settled either way, so claims waiting behind this one go on.
  co_await r.settle_claim(name, failure ? pid{} : started);
  if (failure) std::rethrow_exception(failure);
  co_return started;
}

awaitable<pid> start_registered_child(registry& r, std::string name, const dynamic_supervisor_base& sup,
                                      child_spec spec) {
  if (pid holder = r.whereis(name)) co_return holder;
  std::exception_ptr failure;
  try {
    co_return co_await sup.start_child(std::move(spec));
  } catch (const grove::error&) {
    failure = std::current_exception();
  }
  // Lost the race for the name: another start registered it meanwhile.
  if (pid holder = r.whereis(name)) co_return holder;
  std::rethrow_exception(failure);
}

} // namespace detail

} // namespace grove
