"""scripts/bench-failover's body: see that script. Every wait is bounded;
every process started here is killed on the way out."""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child whose stderr lines are collected (with their arrival times)."""

    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        self.lines = []
        self.cond = threading.Condition()
        self.ready = None
        threading.Thread(target=self._read, args=(self.p.stderr, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.p.stdout, False), daemon=True).start()

    def _read(self, stream, is_err):
        for line in stream:
            with self.cond:
                if is_err:
                    self.lines.append((time.monotonic(), line))
                elif self.ready is None and line.startswith("{"):
                    self.ready = json.loads(line)
                self.cond.notify_all()

    def wait(self, pred, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while not pred(self):
                left = end - time.monotonic()
                if left <= 0 or self.p.poll() is not None and not pred(self):
                    return False
                self.cond.wait(min(left, 0.5))
        return True

    def kill(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait(timeout=10)


def start_etcd(tmp):
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    e = Proc(["etcd", "--name", "bench", "--data-dir", os.path.join(tmp, "etcd"), "--listen-client-urls", url,
              "--advertise-client-urls", url, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
              "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
              "--initial-cluster", f"bench=http://127.0.0.1:{peer}"])
    if not e.wait(lambda p: any("ready to serve client requests" in l for _, l in p.lines), 60):
        raise RuntimeError("etcd did not start")
    return e, url


def start_groved(groved, url, name, ttl):
    g = Proc([groved, "--tcp.port=0", "--tls.port=0", "--log.format=json", "--workers=1",
              "--cluster.etcd=" + url, "--cluster.node=" + name, f"--cluster.lease_ttl_s={ttl}"])
    if not g.wait(lambda p: p.ready is not None, 60):
        raise RuntimeError(f"groved {name} did not start: " + "".join(l for _, l in g.lines[-5:]))
    return g


def grovectl(grovectl_path, port, *args, stdin=None):
    return subprocess.run([grovectl_path, "--port", str(port), *args], input=stdin, capture_output=True, text=True,
                          timeout=60)


def one_run(groved, ctl, tenants, ttl):
    with tempfile.TemporaryDirectory(prefix="grove-failover-") as tmp:
        procs = []
        try:
            etcd, url = start_etcd(tmp)
            procs.append(etcd)
            a = start_groved(groved, url, "a", ttl)
            procs.append(a)
            b = start_groved(groved, url, "b", ttl)
            procs.append(b)
            c = start_groved(groved, url, "c", ttl)
            procs.append(c)
            a_port = a.ready["tcp"]["port"]
            for i in range(tenants):
                r = grovectl(ctl, a_port, "tenant", "install", f"t{i}")
                if r.returncode != 0:
                    raise RuntimeError("install failed: " + r.stderr)
            script = "".join(json.dumps({"call": {"op": "put", "key": f"k{i}", "value": i},
                                         "expect": {"ok": True}}) + "\n" for i in range(1000))
            r = grovectl(ctl, a_port, "script", stdin=script)
            if r.returncode != 0:
                raise RuntimeError("writes failed: " + r.stderr)
            want = tenants + 1
            killed = time.monotonic()
            os.killpg(a.p.pid, signal.SIGKILL)
            a.p.wait(timeout=10)

            def takeovers():
                return [t for g in (b, c) for t, l in list(g.lines) if '"tenant_taken_over"' in l]

            # A client's view: the default tenant answering through b again.
            b_port = b.ready["tcp"]["port"]
            answered = None
            end = killed + ttl + 30
            while time.monotonic() < end:
                r = grovectl(ctl, b_port, "call", '{"op":"get","key":"k999"}')
                if r.returncode == 0 and json.loads(r.stdout).get("value") == 999:
                    answered = time.monotonic()
                    break
            for g in (b, c):
                g.wait(lambda p: len(takeovers()) >= want, max(0.0, end - time.monotonic()))
            times = takeovers()
            if len(times) < want or answered is None:
                raise RuntimeError(f"only {len(times)} of {want} tenants taken over")
            return max(times) - killed, answered - killed
        finally:
            for p in reversed(procs):
                p.kill()


def main():
    groved, ctl, runs, tenants, ttl = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    print(f"failover: 3 nodes, node a killed serving {tenants + 1} tenants (1,000 writes), "
          f"cluster.lease_ttl_s={ttl}; {runs} runs")
    print("| run | kill -> last tenant taken over (s) | kill -> default tenant answering through b (s) |")
    print("|---:|---:|---:|")
    last, answer = [], []
    for run in range(1, runs + 1):
        t, a = one_run(groved, ctl, tenants, ttl)
        last.append(t)
        answer.append(a)
        print(f"| {run} | {t:.3f} | {a:.3f} |", flush=True)

    def dist(xs):
        xs = sorted(xs)
        return (f"min {xs[0]:.3f}, p50 {statistics.median(xs):.3f}, "
                f"p90 {xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]:.3f}, max {xs[-1]:.3f}")

    print(f"\nlast tenant taken over: {dist(last)} s")
    print(f"default tenant answering: {dist(answer)} s")


if __name__ == "__main__":
    main()
