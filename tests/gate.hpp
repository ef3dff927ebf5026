// Test support: a gate that holds work until the test opens it. Calls to
// pass wait (without blocking any thread) until open_gate is cast; after
// that they pass at once.
#pragma once

#include <grove/core/gen_server.hpp>

#include <vector>

namespace test_support {

struct pass {
  using reply_type = bool;
};
struct open_gate {};

class gate : public grove::gen_server {
public:
  grove::call_result<bool> handle_call(pass, grove::from<bool> caller) {
    if (open_) return true;
    waiting_.push_back(caller);
    return grove::noreply;
  }
  void handle_cast(open_gate) {
    open_ = true;
    for (auto& w : waiting_) w.reply(true);
    waiting_.clear();
  }

private:
  bool open_ = false;
  std::vector<grove::from<bool>> waiting_;
};

} // namespace test_support
