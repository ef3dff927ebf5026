#!/usr/bin/env escript
%% The real BEAM as the judge of grove's ETF codec (tests/erps/etf_test.cpp).
%%
%%   etf_judge.escript generate N SEED
%%       N random terms from a seeded generator, one line each:
%%       "<term_to_binary(T)> <with [{compressed, 6}]> <with [{minor_version, 2}]>" in hex.
%%   etf_judge.escript check
%%       reads hex lines (grove's encodings) on stdin; for each, binary_to_term and
%%       prints "<term_to_binary(T) in hex> <io_lib:format("~p", [T]) on one line>".
-mode(compile).

main(["generate", N, Seed]) ->
    rand:seed(exsss, list_to_integer(Seed)),
    lists:foreach(fun(_) ->
                          T = gen(4),
                          io:format("~s ~s ~s~n", [hex(term_to_binary(T)),
                                                   hex(term_to_binary(T, [{compressed, 6}])),
                                                   hex(term_to_binary(T, [{minor_version, 2}]))])
                  end, lists:seq(1, list_to_integer(N)));
main(["check"]) ->
    check_lines();
main(_) ->
    io:format(standard_error, "usage: etf_judge.escript generate N SEED | check~n", []),
    halt(2).

check_lines() ->
    case io:get_line("") of
        eof -> ok;
        Line ->
            T = binary_to_term(unhex(string:trim(Line))),
            Shown = lists:flatten(io_lib:format("~0p", [T])),
            io:format("~s ~ts~n", [hex(term_to_binary(T)), Shown]),
            check_lines()
    end.

hex(B) -> [io_lib:format("~2.16.0b", [X]) || <<X>> <= B].
unhex(S) -> << <<(list_to_integer([A, B], 16))>> || <<A, B>> <= list_to_binary(S) >>.

%% A random term; Depth bounds the nesting.
gen(0) -> leaf();
gen(Depth) ->
    case rand:uniform(10) of
        1 -> list_to_tuple([gen(Depth - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        2 -> [gen(Depth - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)];
        3 -> maps:from_list([{gen(Depth - 1), gen(Depth - 1)} || _ <- lists:seq(1, rand:uniform(6) - 1)]);
        4 -> [gen(Depth - 1) | leaf()]; % often improper
        5 -> [rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(12))]; % a string
        _ -> leaf()
    end.

leaf() ->
    case rand:uniform(14) of
        1 -> rand:uniform(256) - 1;
        2 -> rand:uniform(1 bsl 31) - (1 bsl 30);
        3 -> (rand:uniform(1 bsl 62) + (1 bsl 40)) * (case rand:uniform(2) of 1 -> 1; 2 -> -1 end);
        4 -> (1 bsl (60 + rand:uniform(200))) + rand:uniform(1000) - 500;
        5 -> -(1 bsl (60 + rand:uniform(200)));
        6 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(60) - 30);
        7 -> lists:nth(rand:uniform(8), [ok, error, nil, true, 'Quoted Atom', 'héllo', 'π', 'and']);
        8 -> crypto_bytes(rand:uniform(40) - 1);
        9 -> <<(crypto_bytes(rand:uniform(4)))/binary, (rand:uniform(127)):7>>;
        10 -> self();
        11 -> make_ref();
        12 -> fun erlang:abs/1;
        13 -> [];
        14 -> float(rand:uniform(1000))
    end.

crypto_bytes(N) -> list_to_binary([rand:uniform(256) - 1 || _ <- lists:seq(1, N)]).
