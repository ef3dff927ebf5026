%% call_pairs.cpp's shape on the BEAM, for scripts/bench-calls: P caller
%% processes, each starting its own gen_server and calling it N times, one
%% call in flight per caller. The scheduler count is erl's +S.
%%
%%   erlc -o DIR call_pairs.erl
%%   erl +S W:W -noshell -pa DIR -eval 'call_pairs:main(P, N)' -s init stop
%%   prints {"system":"erlang","pairs":P,"workers":W,"round_trips":R,"seconds":S,"per_second":X}
-module(call_pairs).
-behaviour(gen_server).
-export([main/2, init/1, handle_call/3, handle_cast/2]).

init([]) -> {ok, nil}.
handle_call(N, _From, State) -> {reply, N, State}.
handle_cast(_Msg, State) -> {noreply, State}.

main(Pairs, Calls) ->
    Self = self(),
    Start = erlang:monotonic_time(),
    [spawn(fun() -> caller(Self, Calls) end) || _ <- lists:seq(1, Pairs)],
    [receive done -> ok end || _ <- lists:seq(1, Pairs)],
    Seconds = erlang:convert_time_unit(erlang:monotonic_time() - Start, native, microsecond) / 1.0e6,
    Trips = Pairs * Calls,
    io:format("{\"system\":\"erlang\",\"pairs\":~B,\"workers\":~B,\"round_trips\":~B,\"seconds\":~.4f,\"per_second\":~B}~n",
              [Pairs, erlang:system_info(schedulers_online), Trips, Seconds, round(Trips / Seconds)]).

caller(Parent, Calls) ->
    {ok, Server} = gen_server:start(?MODULE, [], []),
    Sum = calls(Server, 0, Calls, 0),
    true = Sum >= 0,
    gen_server:stop(Server),
    Parent ! done.

calls(_Server, Calls, Calls, Sum) -> Sum;
calls(Server, I, Calls, Sum) ->
    R = gen_server:call(Server, I band 16#ffff, infinity),
    calls(Server, I + 1, Calls, Sum + R).
