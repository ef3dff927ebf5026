%% The erps echo of erps_echo_server (echo_frames.hpp) on the BEAM, the way
%% an Erlang service is written: one gen_server per connection, reading
%% with {active, once}. A call's payload [Id, Request] comes back as the
%% reply [Request, Id] (the id is scanned to the first comma: erps_load's
%% ids are numbers); keepalives are answered; casts are dropped; a peer out
%% of step is closed.
%%
%%   erl -noshell -pa DIR -eval 'erps_echo:main(Port)'   prints {"event":"ready","port":N}; SIGTERM stops it
-module(erps_echo).
-behaviour(gen_server).
-export([main/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

%% Returns once listening (the acceptor is a process of its own), so that
%% init stays free to stop the node on SIGTERM.
main(Port) ->
    Parent = self(),
    spawn(fun() ->
                  {ok, Listener} = gen_tcp:listen(Port, [binary, {active, false}, {reuseaddr, true},
                                                         {ip, {127, 0, 0, 1}}, {nodelay, true}, {backlog, 1024}]),
                  Parent ! {listening, Listener},
                  accept(Listener)
          end),
    receive {listening, Listener} -> ok end,
    {ok, Bound} = inet:port(Listener),
    io:format("{\"event\":\"ready\",\"port\":~b}~n", [Bound]).

accept(Listener) ->
    {ok, Socket} = gen_tcp:accept(Listener),
    {ok, Pid} = gen_server:start(?MODULE, Socket, []),
    ok = gen_tcp:controlling_process(Socket, Pid),
    Pid ! go,
    accept(Listener).

init(Socket) -> {ok, {Socket, <<>>}}.

handle_call(_, _, State) -> {reply, ok, State}.
handle_cast(_, State) -> {noreply, State}.

handle_info(go, {Socket, _} = State) ->
    ok = inet:setopts(Socket, [{active, once}]),
    {noreply, State};
handle_info({tcp, Socket, Data}, {Socket, Buffered}) ->
    case frames(<<Buffered/binary, Data/binary>>, []) of
        {Rest, Replies} ->
            Replies =/= [] andalso gen_tcp:send(Socket, lists:reverse(Replies)),
            ok = inet:setopts(Socket, [{active, once}]),
            {noreply, {Socket, Rest}};
        out_of_step ->
            gen_tcp:close(Socket),
            {stop, normal, {Socket, <<>>}}
    end;
handle_info({tcp_closed, _}, State) -> {stop, normal, State};
handle_info({tcp_error, _, _}, State) -> {stop, normal, State}.

%% Whole frames answered, the rest kept: {Rest, RepliesReversed} | out_of_step.
frames(<<"erps", 0:40, Rest/binary>>, Out) ->
    frames(Rest, [<<"erps", 0:40>> | Out]);
frames(<<"erps", Length:32, Type:8, Header:87/binary, Payload:Length/binary, Rest/binary>>, Out) ->
    case Type of
        4 ->
            case reply(Header, Payload) of
                error -> out_of_step;
                Reply -> frames(Rest, [Reply | Out])
            end;
        _ -> frames(Rest, Out)
    end;
frames(<<"erps", _/binary>> = Partial, Out) -> {Partial, Out};
frames(Short, Out) when byte_size(Short) < 4 ->
    case binary:longest_common_prefix([Short, <<"erps">>]) =:= byte_size(Short) of
        true -> {Short, Out};
        false -> out_of_step
    end;
frames(_, _) -> out_of_step.

reply(Header, <<"[", Body/binary>>) when byte_size(Body) >= 3 ->
    case binary:match(Body, <<",">>) of
        {Comma, 1} ->
            Id = binary:part(Body, 0, Comma),
            Request = binary:part(Body, Comma + 1, byte_size(Body) - Comma - 2),
            Length = byte_size(Request) + byte_size(Id) + 3,
            [<<"erps", Length:32, 2, Header/binary>>, $[, Request, $,, Id, $]];
        nomatch -> error
    end;
reply(_, _) -> error.
