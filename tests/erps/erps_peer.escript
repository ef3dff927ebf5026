#!/usr/bin/env escript
%% A real BEAM erps peer for grove's tests (tests/erps/etf_peer_test.cpp):
%% erps framing (a 96-byte header, then term_to_binary) over gen_tcp.
%%
%%   erps_peer.escript client PORT
%%       talks to a grove ETF daemon whose server echoes, keeps the last
%%       cast and pushes on request; prints "ok NAME" or "fail NAME WHY" per
%%       step, then "done".
%%   erps_peer.escript groved PORT
%%       puts and gets a key in a groved started with --codec=etf.
%%   erps_peer.escript server
%%       listens on 127.0.0.1, port 0, prints "port N", serves one client:
%%       a call {Ref, Req} is answered {Req, Ref}, a cast is kept and
%%       pushed back as {cast_seen, Term}; exits when the client closes.
-mode(compile).

main(["client", Port]) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, list_to_integer(Port), [binary, {active, false}, {packet, raw}]),
    step("call_integer", S, {101, 42}, fun(R) -> R =:= {reply, {42, 101}} end),
    step("call_map_atom_keys", S, {102, #{op => hello, list => [1, 2, 3], nested => {a, 1.5}}},
         fun(R) -> R =:= {reply, {#{<<"op">> => <<"hello">>, <<"list">> => [1, 2, 3],
                                     <<"nested">> => [<<"a">>, 1.5]}, 102}} end),
    send(S, 8, #{<<"cast">> => 7}, <<>>),
    step("cast_then_call", S, {103, <<"last_cast">>}, fun(R) -> R =:= {reply, {#{<<"cast">> => 7}, 103}} end),
    send(S, 4, {104, <<"push">>}, <<>>),
    expect("push_frame", next(S), fun(R) -> R =:= {push, <<"pushed">>} end),
    expect("reply_after_push", next(S), fun(R) -> R =:= {reply, {<<"ok">>, 104}} end),
    step("big_integer", S, {105, 1 bsl 70}, fun({error, B}) -> is_binary(B); (_) -> false end),
    send(S, 4, {106, 1}, <<"other">>),
    expect("wrong_identifier", next(S), fun({error, B}) -> is_binary(B); (_) -> false end),
    step("still_served", S, {107, <<"after">>}, fun(R) -> R =:= {reply, {<<"after">>, 107}} end),
    gen_tcp:close(S),
    io:format("done~n");
main(["groved", Port]) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, list_to_integer(Port), [binary, {active, false}, {packet, raw}]),
    step("put_atom_keys", S, {201, #{op => put, key => <<"a">>, value => 1}},
         fun({reply, {#{<<"ok">> := true}, 201}}) -> true; (_) -> false end),
    step("get_binary_keys", S, {202, #{<<"op">> => <<"get">>, <<"key">> => <<"a">>}},
         fun(R) -> R =:= {reply, {#{<<"ok">> => true, <<"value">> => 1}, 202}} end),
    step("get_missing", S, {203, #{op => get, key => <<"nobody">>}},
         fun({reply, {#{<<"ok">> := false}, 203}}) -> true; (_) -> false end),
    gen_tcp:close(S),
    io:format("done~n");
main(["server"]) ->
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {packet, raw}, {ip, {127, 0, 0, 1}}, {reuseaddr, true}]),
    {ok, Port} = inet:port(L),
    io:format("port ~p~n", [Port]),
    {ok, S} = gen_tcp:accept(L, 30000),
    serve(S);
main(_) ->
    io:format(standard_error, "usage: erps_peer.escript client PORT | groved PORT | server~n", []),
    halt(2).

serve(S) ->
    case recv(S) of
        {call, {Ref, Req}} -> send(S, 2, {Req, Ref}, <<>>), serve(S);
        {cast, T} -> send(S, 3, {cast_seen, T}, <<>>), serve(S);
        keepalive -> serve(S);
        closed -> ok;
        Other -> io:format("unexpected ~p~n", [Other]), serve(S)
    end.

step(Name, S, Call, Check) ->
    send(S, 4, Call, <<>>),
    expect(Name, next(S), Check).

%% The next frame that is not a keepalive.
next(S) ->
    case recv(S) of
        keepalive -> next(S);
        Other -> Other
    end.

expect(Name, Got, Check) ->
    case catch Check(Got) of
        true -> io:format("ok ~s~n", [Name]);
        _ -> io:format("fail ~s ~p~n", [Name, Got])
    end.

%% type: 1 error, 2 reply, 3 push, 4 call, 8 cast; version 0.0.0.
send(S, Type, Term, Identifier) ->
    Payload = term_to_binary(Term),
    Id = <<Identifier/binary, 0:((36 - byte_size(Identifier)) * 8)>>,
    ok = gen_tcp:send(S, <<"erps", (byte_size(Payload)):32, Type:8, 0, 0, 0, Id/binary, 0:(48 * 8), Payload/binary>>).

recv(S) ->
    case gen_tcp:recv(S, 9, 10000) of
        {ok, <<"erps", 0:32, 0:8>>} -> keepalive;
        {ok, <<"erps", Size:32, Type:8>>} ->
            {ok, <<_:87/binary, Payload/binary>>} = gen_tcp:recv(S, 87 + Size, 10000),
            T = binary_to_term(Payload),
            case Type of 1 -> {error, T}; 2 -> {reply, T}; 3 -> {push, T}; 4 -> {call, T}; 8 -> {cast, T}; _ -> {unknown, Type, T} end;
        {error, closed} -> closed;
        {error, Why} -> {recv_error, Why}
    end.
