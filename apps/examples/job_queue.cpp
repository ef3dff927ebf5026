// A small tour of grove's core as a program: a job queue server that
// answers "next job" calls later (deferred replies), a worker process that
// crashes, and the monitor that tells the queue about it.
// Run: build/apps/examples/grove-job-queue-example
#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>

#include <deque>
#include <iostream>
#include <string>

struct next_job {
  using reply_type = std::string;
};
struct submit {
  std::string job;
};
struct worker_started {
  grove::pid worker;
};

/// Hands jobs to workers; a worker asking when there is no job waits (its
/// call is answered later, through its from handle).
class job_queue : public grove::gen_server {
public:
  grove::call_result<std::string> handle_call(next_job, grove::from<std::string> from) {
    if (jobs_.empty()) {
      idle_.push_back(from);
      return grove::noreply;
    }
    std::string job = jobs_.front();
    jobs_.pop_front();
    return job;
  }

  void handle_cast(submit s) {
    if (!idle_.empty()) {
      idle_.front().reply(s.job);
      idle_.pop_front();
    } else {
      jobs_.push_back(s.job);
    }
  }

  void handle_cast(worker_started w) { this_process().monitor(w.worker); }

  void handle_info(grove::message m) {
    if (auto* down = m.get_if<grove::down_message>()) {
      std::cout << "queue: worker " << down->process << " ended: " << down->reason << "\n";
    }
  }

private:
  std::deque<std::string> jobs_;
  std::deque<grove::from<std::string>> idle_;
};

static grove::awaitable<void> worker(grove::process& self, grove::server_ref<job_queue> queue) {
  queue.cast(worker_started{self.self()});
  for (;;) {
    std::string job = co_await queue.call(next_job{}, grove::infinity);
    std::cout << "worker " << self.self() << ": " << job << "\n";
    if (job == "divide by zero") throw std::domain_error("cannot divide by zero");
  }
}

static grove::awaitable<void> demo(grove::process& self) {
  auto queue = co_await grove::start<job_queue>(self.node());
  grove::pid w = grove::spawn(self.node(), [queue](grove::process& p) { return worker(p, queue); });
  auto watch = self.monitor(w);
  queue.cast(submit{"resize images"});
  queue.cast(submit{"send mail"});
  queue.cast(submit{"divide by zero"});
  grove::message m = co_await self.receive(); // the worker's down message
  std::cout << "main: worker ended with " << m.get<grove::down_message>().reason << " (monitor "
            << (m.get<grove::down_message>().ref == watch ? "matches" : "differs") << ")\n";
}

int main() {
  grove::node node{{.threads = 2}};
  node.block_on(demo);
}
