// gRPC C++ beside grove's erps echo (scripts/bench-erps): a unary Echo.Call
// whose reply carries the request's id and value, on gRPC's callback API
// (its recommended server API), plain HTTP/2 without TLS on 127.0.0.1.
// gRPC runs its own threads; scripts/bench-erps confines the process to
// one CPU, as it does the other servers.
//
//   grpc_echo_server [--port N]   prints {"event":"ready","port":N}; stops on SIGINT/SIGTERM
#include "echo.grpc.pb.h"

#include <grpcpp/grpcpp.h>

#include <csignal>
#include <iostream>
#include <memory>
#include <string>

namespace {

class echo_service final : public grove_bench::Echo::CallbackService {
  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext* context, const grove_bench::Request* request,
                                 grove_bench::Reply* reply) override {
    reply->set_id(request->id());
    reply->set_value(request->value());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

} // namespace

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--port" && i + 1 < argc) port = std::stoi(argv[++i]);
    else if (arg == "--threads" && i + 1 < argc) ++i; // gRPC sizes its own pools; the CPU set bounds them
    else {
      std::cerr << "usage: grpc_echo_server [--port N]\n";
      return 2;
    }
  }
  // Signals wait in main, not in a handler: block them before gRPC starts threads.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  echo_service service;
  int bound = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    std::cerr << "grpc_echo_server: could not listen on 127.0.0.1:" << port << "\n";
    return 1;
  }
  std::cout << "{\"event\":\"ready\",\"port\":" << bound << "}" << std::endl;
  int signal = 0;
  sigwait(&stop_signals, &signal);
  server->Shutdown();
  return 0;
}
