#!/usr/bin/env python3
"""Tables for scripts/bench, scripts/bench-erps and scripts/bench-calls.

  bench_table.py erps RESULTS IDLE    the erps rows, every server
  bench_table.py calls RESULTS        the local-call rows
  bench_table.py all RESULTS IDLE     one table: every row, grove's figure and its ratios

RESULTS holds one JSON object per line, as the scripts write them. Each
figure is shown per round ("a / b"); a ratio is the range of the per-round
ratios (each round runs every system, so a ratio never mixes rounds).
"""
import json
import sys

ERPS_SERVERS = [("grove-json", "grove, JSON values"), ("hand", "hand-written (Asio)"), ("nlohmann", "hand-written + nlohmann"),
                ("epoll", "raw epoll"), ("erlang", "Erlang gen_server"), ("grpc", "gRPC C++")]
CALL_SYSTEMS = [("caf", "CAF 0.17"), ("erlang", "Erlang/OTP")]


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def figures(values):
    return " / ".join(f"{v:,.0f}" for v in values)


def ratio(a, b):
    q = [x / y for x, y in zip(a, b) if y]
    if not q:
        return ""
    lo, hi = min(q), max(q)
    return f"{lo:.2f}×" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}–{hi:.2f}×"


def erps_rows(records, idle):
    """[(label, {server: [figure per round]}, higher_is_better, {server: [cpu µs per op]})]"""
    rows, order = {}, []
    for r in records:
        if r.get("bench", "erps") != "erps":
            continue
        if r["row"] not in rows:
            order.append(r["row"])
        rows.setdefault(r["row"], {}).setdefault(r["server"], []).append(r["result"])
    out = []
    half = idle // 2
    for row in order:
        by_server = rows[row]
        if row == "idle":
            for part, label in (("first", f"bytes per idle connection (first {half:,})"),
                                ("second", f"bytes per idle connection (second {half:,}, reusing the first's)")):
                out.append((label, {s: [x[part] for x in v] for s, v in by_server.items()}, False, {}))
            continue
        connect = row == "new connections"
        key = "per_second" if connect else "calls_per_second"
        cpu = {}
        for s, v in by_server.items():
            per = []
            for x in v:
                ops = x["load"]["connections"] if connect else x["load"]["replies"]
                per.append(1e6 * x["server_cpu_seconds"] / ops if ops else 0.0)
            cpu[s] = per
        unit = "connections/s" if connect else "calls/s"
        out.append((f"erps {row} ({unit})", {s: [x["load"][key] for x in v] for s, v in by_server.items()}, True, cpu))
    return out


def call_rows(records):
    rows = {}
    for r in records:
        if r.get("bench") != "calls":
            continue
        key = (r["cpus"], r["result"]["pairs"])
        rows.setdefault(key, {}).setdefault(r["variant"], []).append(r["result"]["per_second"])
    out = []
    for cpus, pairs in sorted(rows, key=lambda k: (-k[0], k[1])):
        label = f"local calls, {cpus} CPU{'s' if cpus > 1 else ''}, {pairs} pair{'s' if pairs > 1 else ''} (round trips/s)"
        out.append((label, rows[(cpus, pairs)]))
    return out


def grove_over(values, other, higher_is_better):
    # Memory: lower is better, so the ratio is other / grove (above 1: grove uses less).
    return ratio(values, other) if higher_is_better else ratio(other, values)


def print_erps(records, idle):
    rows = erps_rows(records, idle)
    servers = [s for s, _ in ERPS_SERVERS if any(s in v for _, v, _, _ in rows)]
    names = dict(ERPS_SERVERS)
    print("| load | grove | " + " | ".join(names[s] for s in servers) + " | "
          + " | ".join(f"grove / {names[s]}" for s in servers) + " |")
    print("|---|---:|" + "---:|" * len(servers) + "---:|" * len(servers))
    for label, v, better, _ in rows:
        g = v.get("grove", [])
        print(f"| {label} | {figures(g)} | " + " | ".join(figures(v.get(s, [])) for s in servers) + " | "
              + " | ".join(grove_over(g, v.get(s, []), better) for s in servers) + " |")
    print()
    print("Server CPU per call or connection (µs), and the load client's latency (p50 / p99 / p99.9 µs), first round:")
    print()
    print("| load | " + " | ".join(["grove"] + [names[s] for s in servers]) + " |")
    print("|---|" + "---|" * (len(servers) + 1))
    by_row = {}
    for r in records:
        if r.get("bench", "erps") == "erps" and r["row"] != "idle" and r["round"] == 1:
            by_row.setdefault(r["row"], {})[r["server"]] = r["result"]
    for label, _, _, cpu in rows:
        if not cpu:
            continue
        row = label[len("erps "):label.rindex(" (")]
        cells = []
        for s in ["grove"] + servers:
            res = by_row.get(row, {}).get(s)
            if not res:
                cells.append("")
                continue
            c = f"{cpu[s][0]:.1f} µs"
            if row != "new connections":
                c += f"; {res['load']['p50_us']:.0f} / {res['load']['p99_us']:.0f} / {res['load']['p999_us']:.0f}"
            cells.append(c)
        print(f"| {row} | " + " | ".join(cells) + " |")


def print_calls(records):
    rows = call_rows(records)
    print("| CPUs, pairs | grove round trips/s | grove, round-robin placement | CAF 0.17 | Erlang/OTP "
          "| grove / CAF | grove / Erlang | grove / its round-robin self |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, v in rows:
        short = label[len("local calls, "):label.rindex(" (")]
        print(f"| {short} | {figures(v['grove'])} | {figures(v.get('grove_rr', []))} | {figures(v.get('caf', []))} "
              f"| {figures(v.get('erlang', []))} | {ratio(v['grove'], v.get('caf', []))} "
              f"| {ratio(v['grove'], v.get('erlang', []))} | {ratio(v['grove'], v.get('grove_rr', []))} |")


def print_all(records, idle):
    erps = erps_rows(records, idle)
    calls = call_rows(records)
    print("| row | grove | grove / hand-written (Asio) | grove / hand-written + nlohmann | grove / raw epoll "
          "| grove / Erlang | grove / gRPC C++ | grove / CAF 0.17 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, v, better, _ in erps:
        g = v.get("grove", [])
        cells = [grove_over(g, v.get(s, []), better) for s in ("hand", "nlohmann", "epoll", "erlang", "grpc")]
        print(f"| {label} | {figures(g)} | " + " | ".join(cells) + " | |")
    for label, v in calls:
        g = v["grove"]
        print(f"| {label} | {figures(g)} | | | | {ratio(g, v.get('erlang', []))} | | {ratio(g, v.get('caf', []))} |")
    print()
    print("Figures per round (a / b). Ratios: grove's figure over the other's, "
          "except memory, where it is the other's bytes over grove's (above 1×: grove holds less). "
          "The erps rows' own figures: scripts/bench-erps; the call rows': scripts/bench-calls.")


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("erps", "calls", "all"):
        sys.exit(__doc__)
    records = load(sys.argv[2])
    idle = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    {"erps": lambda: print_erps(records, idle), "calls": lambda: print_calls(records),
     "all": lambda: print_all(records, idle)}[sys.argv[1]]()


if __name__ == "__main__":
    main()
