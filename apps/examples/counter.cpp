// A counter server, started, called and stopped from main(): the smallest
// complete grove program. Run: build/apps/examples/grove-counter-example
#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>

#include <iostream>

struct get {
  using reply_type = int;
};
struct add {
  int n;
};

class counter : public grove::gen_server {
public:
  explicit counter(int start) : n_(start) {}
  int handle_call(get) { return n_; }
  void handle_cast(add a) { n_ += a.n; }

private:
  int n_;
};

static grove::awaitable<int> demo(grove::node& node) {
  auto ref = co_await grove::start<counter>(node, 40);
  ref.cast(add{2});
  co_return co_await ref.call(get{});
}

int main() {
  grove::node node{{.threads = 2}};
  std::cout << "counter says " << node.block_on(demo(node)) << "\n";
}
