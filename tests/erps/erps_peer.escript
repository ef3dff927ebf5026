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
%%   erps_peer.escript terms PORT [CERTDIR]
%%       talks to a grove ETF daemon whose term server echoes calls exactly,
%%       keeps the last cast (a call 'last_cast' answers it) and pushes on
%%       request ('push' pushes {pushed, LastCast}): terms with no JSON form (atoms, tuples, big
%%       integers, pids, refs, funs, bit strings, improper lists) must come
%%       back =:= what was sent. With CERTDIR, over mutual TLS (the test
%%       CA's client.pem); prints as `client` does.
%%   erps_peer.escript server [CERTDIR]
%%       listens on 127.0.0.1, port 0, prints "port N", serves one client:
%%       a call {Ref, Req} is answered {Req, Ref}, a cast is kept and
%%       pushed back as {cast_seen, Term}; exits when the client closes.
%%       With CERTDIR, over TLS requiring a client certificate of the CA.
-mode(compile).

main(["client", Port]) ->
    S = connect(Port, none),
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
    close(S),
    io:format("done~n");
main(["terms", Port | Tls]) ->
    S = connect(Port, certdir(Tls)),
    Pid = self(),
    Ref = make_ref(),
    Fun = fun lists:sum/1,
    Exotic = [{ok, <<"value">>}, 1 bsl 70, -(1 bsl 64), [a, b | c], Pid, Ref, Fun, <<5:3>>,
              #{1 => x, 1.0 => y, {t} => [1.5], <<"k">> => 'h\x{e9}llo'}, "a string", [], {}, nil, -3.25e-7,
              list_to_atom([16#263A])],
    lists:foldl(fun(T, N) ->
                        step("echo " ++ io_lib:format("~w", [N]), S, {N, T}, fun(R) -> R =:= {reply, {T, N}} end),
                        N + 1
                end, 301, Exotic),
    send(S, 8, {cast, Pid, [1 | 2]}, <<>>),
    step("cast_then_call", S, {400, last_cast}, fun(R) -> R =:= {reply, {{cast, Pid, [1 | 2]}, 400}} end),
    send(S, 4, {401, push}, <<>>),
    expect("push_frame", next(S), fun(R) -> R =:= {push, {pushed, {cast, Pid, [1 | 2]}}} end),
    expect("reply_after_push", next(S), fun(R) -> R =:= {reply, {ok, 401}} end),
    close(S),
    io:format("done~n");
main(["groved", Port]) ->
    S = connect(Port, none),
    step("put_atom_keys", S, {201, #{op => put, key => <<"a">>, value => 1}},
         fun({reply, {#{<<"ok">> := true}, 201}}) -> true; (_) -> false end),
    step("get_binary_keys", S, {202, #{<<"op">> => <<"get">>, <<"key">> => <<"a">>}},
         fun(R) -> R =:= {reply, {#{<<"ok">> => true, <<"value">> => 1}, 202}} end),
    step("get_missing", S, {203, #{op => get, key => <<"nobody">>}},
         fun({reply, {#{<<"ok">> := false}, 203}}) -> true; (_) -> false end),
    close(S),
    io:format("done~n");
main(["server" | Tls]) ->
    Options = [binary, {active, false}, {packet, raw}, {ip, {127, 0, 0, 1}}, {reuseaddr, true}],
    S = case certdir(Tls) of
            none ->
                {ok, L} = gen_tcp:listen(0, Options),
                {ok, Port} = inet:port(L),
                io:format("port ~p~n", [Port]),
                {ok, C} = gen_tcp:accept(L, 30000),
                {gen_tcp, C};
            Dir ->
                {ok, _} = application:ensure_all_started(ssl),
                {ok, L} = ssl:listen(0, Options ++ [{certfile, filename:join(Dir, "server.pem")},
                                                    {keyfile, filename:join(Dir, "server.key")},
                                                    {cacertfile, filename:join(Dir, "ca.pem")},
                                                    {verify, verify_peer}, {fail_if_no_peer_cert, true}]),
                {ok, {_, Port}} = ssl:sockname(L),
                io:format("port ~p~n", [Port]),
                {ok, T} = ssl:transport_accept(L, 30000),
                {ok, C} = ssl:handshake(T, 30000),
                {ssl, C}
        end,
    serve(S);
main(_) ->
    io:format(standard_error, "usage: erps_peer.escript client PORT | terms PORT [CERTDIR] | groved PORT | server [CERTDIR]~n", []),
    halt(2).

certdir([]) -> none;
certdir([Dir]) -> Dir.

%% A connection is {gen_tcp, Socket} or {ssl, Socket}: the two modules
%% take the same send, recv and close.
connect(Port, none) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, list_to_integer(Port), [binary, {active, false}, {packet, raw}]),
    {gen_tcp, S};
connect(Port, Dir) ->
    {ok, _} = application:ensure_all_started(ssl),
    {ok, S} = ssl:connect({127, 0, 0, 1}, list_to_integer(Port),
                          [binary, {active, false}, {packet, raw},
                           {certfile, filename:join(Dir, "client.pem")}, {keyfile, filename:join(Dir, "client.key")},
                           {cacertfile, filename:join(Dir, "ca.pem")}, {verify, verify_peer},
                           {server_name_indication, "localhost"}], 30000),
    {ssl, S}.

close({Mod, S}) -> Mod:close(S).

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
    {Mod, Sock} = S,
    ok = Mod:send(Sock, <<"erps", (byte_size(Payload)):32, Type:8, 0, 0, 0, Id/binary, 0:(48 * 8), Payload/binary>>).

recv({Mod, S}) ->
    case Mod:recv(S, 9, 10000) of
        {ok, <<"erps", 0:32, 0:8>>} -> keepalive;
        {ok, <<"erps", Size:32, Type:8>>} ->
            {ok, <<_:87/binary, Payload/binary>>} = Mod:recv(S, 87 + Size, 10000),
            T = binary_to_term(Payload),
            case Type of 1 -> {error, T}; 2 -> {reply, T}; 3 -> {push, T}; 4 -> {call, T}; 8 -> {cast, T}; _ -> {unknown, Type, T} end;
        {error, closed} -> closed;
        {error, Why} -> {recv_error, Why}
    end.
