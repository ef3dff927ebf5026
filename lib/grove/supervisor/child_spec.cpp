#include <grove/supervisor/child_spec.hpp>

#include <grove/core/event.hpp>
#include <grove/supervisor/error.hpp>

#include <boost/core/demangle.hpp>

#include <cstdio>
#include <ostream>

namespace grove {

std::string shutdown_policy::to_string() const {
  switch (kind_) {
  case kind::brutal_kill: return "brutal_kill";
  case kind::infinity: return "infinity";
  case kind::timeout: break;
  }
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(limit_).count()) + "ms";
}

namespace detail {
void extra_arguments::throw_mismatch(const std::type_info& wanted) const {
  throw grove::error(errc::invalid_argument,
                     "the dynamic supervisor's extra arguments are " +
                         (type_ ? boost::core::demangle(type_->name()) : std::string("std::tuple<> (none)")) +
                         " but the child expects " + boost::core::demangle(wanted.name()) +
                         ": use the dynamic_supervisor_of<...> the supervisor was started as");
}
} // namespace detail

awaitable<pid> child_start::operator()(node& n, const detail::extra_arguments& extra) const {
  if (!impl_) throw grove::error(errc::invalid_argument, "child_spec::start is empty");
  return impl_->start(n, extra);
}

void report_to_events(const supervisor_report& r) {
  std::vector<event_field> fields{{"supervisor", r.supervisor.to_string()}};
  if (!r.child_id.empty()) fields.push_back({"child_id", r.child_id});
  if (r.child) fields.push_back({"child", r.child.to_string()});
  fields.push_back({"reason", r.reason.to_string()});
  grove::emit(event{.level = event_level::error, .layer = "supervisor", .name = r.context, .fields = std::move(fields)});
}

std::ostream& operator<<(std::ostream& os, restart_type r) {
  switch (r) {
  case restart_type::permanent: return os << "permanent";
  case restart_type::transient: return os << "transient";
  case restart_type::temporary: return os << "temporary";
  }
  return os;
}

std::ostream& operator<<(std::ostream& os, child_type t) {
  return os << (t == child_type::worker ? "worker" : "supervisor");
}

std::ostream& operator<<(std::ostream& os, child_status s) {
  switch (s) {
  case child_status::running: return os << "running";
  case child_status::restarting: return os << "restarting";
  case child_status::stopped: return os << "stopped";
  }
  return os;
}

const std::error_category& supervisor_category() noexcept {
  static constexpr const char* messages[] = { // in the order of supervisor_errc
      "a child with this id is already running under the supervisor",
      "a child spec with this id is already present (stopped): restart_child or delete_child it first",
      "no such child",
      "the child is running: terminate_child it first",
      "the child is being restarted by its supervisor; try again",
      "the dynamic supervisor already has max_children children",
  };
  return detail::table_category_of<supervisor_errc::max_children>("grove.supervisor", messages);
}

} // namespace grove
