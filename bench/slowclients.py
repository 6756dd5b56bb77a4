"""Slow and idle clients: does `GET /health` still answer within 1 s from a fresh connection?

    .venv/bin/python -m bench.slowclients --idle 250 --slow 250

A `warren api` (2 gunicorn processes x 8 threads, the defaults; bearer tokens required) runs
on a free port of 127.0.0.1, and in front of it nginx with the site the README recommends
(`deploy/nginx/warren.conf.template`, see `bench.front`), on a port of its own. When nginx is
not installed that half is skipped, and said so.

Against each (`--targets plain,nginx`), while a siege is held:
- `--idle` connections that send nothing;
- `--slow` connections that send a valid request line and headers (`POST /jobs` with a valid
  token, Content-Length 100,000) and the first bytes of the body, then one more byte every
  `--trickle` seconds: never finishing, never quite silent;
a connection the server closes is opened again at once, so the siege stays whole (as an
attacker would keep it). After `--settle` seconds, `--probes` requests `GET /health`, each on
a fresh connection, are sent evenly over `--seconds` seconds, each in its own thread (a stuck
one does not delay the next); a probe waits at most `--probe-timeout` seconds and counts as
that long when it gives up. Then the siege ends and "recovery" is how long until `/health`
answers again.

With `--sweep` (the default) the plain API is also besieged by idle connections alone, then
slow ones alone, in growing numbers, with fewer probes: the largest siege under which every
probe still answered within 1 s is what plain `warren api` withstands.

Mind gunicorn's `worker_connections` (1,000 per process): a process holding that many stops
accepting, so a siege of 1,000 connections that happens to land on one of the two processes
leaves the other free, and the probes pass by luck. The default siege (250 + 250) stays
below it, as does every siege of fewer than 1,000 connections.
"""

from __future__ import annotations

import argparse
import http.client
import resource
import select
import socket
import subprocess
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import front, harness
from bench.harness import BenchEnv, BenchError, latency_summary, say

TOKEN = "bench-slowclients"
LIMIT_SECONDS = 1.0
BODY_LENGTH = 100_000
SLOW_HEAD = (
    "POST /jobs HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    f"Authorization: Bearer {TOKEN}\r\n"
    "Content-Type: application/json\r\n"
    f"Content-Length: {BODY_LENGTH}\r\n"
    "\r\n"
    '{"type": "bench-noop", "payload": {'
).encode()
SWEEP_IDLE = (4, 8, 12, 16, 32, 64, 128, 256, 500)
SWEEP_SLOW = (2, 4, 8, 12, 16, 32)


# -- the siege ------------------------------------------------------------------------------


@dataclass
class Held:
    """One connection of the siege."""

    kind: str  # "idle" or "slow"
    sock: socket.socket
    next_byte: float = 0.0


@dataclass
class Siege:
    """`idle` silent connections and `slow` never-finishing requests to host:port, kept whole
    by a thread that reopens what the server closes and trickles the slow bodies."""

    host: str
    port: int
    idle: int
    slow: int
    trickle: float
    held: list[Held] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=lambda: {"idle": 0, "slow": 0})
    connect_errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Siege:
        self.held = [c for c in (self._open("idle") for _ in range(self.idle)) if c]
        self.held += [c for c in (self._open("slow") for _ in range(self.slow)) if c]
        self._thread = threading.Thread(target=self._keep, name="siege", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for conn in self.held:
            conn.sock.close()
        self.held = []

    def _open(self, kind: str) -> Held | None:
        """Connect, and for a slow one send its head and first body bytes. None when the
        connection failed (counted): a siege of a server that refuses is no siege."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=5)
            if kind == "slow":
                sock.sendall(SLOW_HEAD)
        except OSError:
            self.connect_errors += 1
            return None
        sock.setblocking(False)
        return Held(kind, sock, time.monotonic() + self.trickle)

    def _keep(self) -> None:
        while not self._stop.wait(0.25):
            self._reopen_closed()
            self._trickle()

    def _reopen_closed(self) -> None:
        """A socket that turned readable was answered (an error) or closed by the server:
        replace it with a new connection of its kind."""
        poller = select.poll()  # select() cannot take descriptors past 1023
        by_fd = {conn.sock.fileno(): conn for conn in self.held}
        for fd in by_fd:
            poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        for fd, _ in poller.poll(0):
            conn = by_fd[fd]
            conn.sock.close()
            self.dropped[conn.kind] += 1
            fresh = self._open(conn.kind)
            # Swapped in place, once the new one is open: a reader in another thread never
            # sees the siege a connection short while it is being replaced.
            index = self.held.index(conn)
            if fresh is None:
                del self.held[index]
            else:
                self.held[index] = fresh

    def _trickle(self) -> None:
        now = time.monotonic()
        for conn in self.held:
            if conn.kind == "slow" and now >= conn.next_byte:
                with suppress(OSError):  # closed: the next round reopens it
                    conn.sock.send(b" ")
                conn.next_byte = now + self.trickle


# -- probing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    seconds: float
    error: str | None


def probe(host: str, port: int, timeout: float) -> Probe:
    """`GET /health` on a fresh connection; how long until the whole answer, connect included."""
    started = time.monotonic()
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        error = None if response.status == 200 else f"HTTP {response.status}"
    except TimeoutError:
        return Probe(timeout, "timeout")
    except (OSError, http.client.HTTPException) as exc:
        error = type(exc).__name__
    finally:
        connection.close()
    return Probe(time.monotonic() - started, error)


def probe_evenly(host: str, port: int, count: int, seconds: float, timeout: float) -> list[Probe]:
    """`count` probes spread over `seconds`, each in its own thread."""
    start = time.monotonic()
    results: list[Probe] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        time.sleep(max(0.0, start + index * seconds / count - time.monotonic()))
        outcome = probe(host, port, timeout)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + timeout + 5)
    return results


def recovery_seconds(host: str, port: int, patience: float = 120) -> float:
    """After a siege: how long until `/health` on a fresh connection answers 200 again."""
    started = time.monotonic()
    harness.wait_until(
        lambda: probe(host, port, 2).error is None, patience, "/health after the siege"
    )
    return round(time.monotonic() - started, 2)


def besiege(host: str, port: int, idle: int, slow: int, args: argparse.Namespace) -> dict:
    """Hold a siege of `idle` + `slow` connections, probe `/health` meanwhile; the figures."""
    recovery_seconds(host, port)  # the previous siege is over
    with Siege(host, port, idle, slow, args.trickle) as siege:
        time.sleep(args.settle)
        probes = probe_evenly(host, port, args.probes, args.seconds, args.probe_timeout)
        held, dropped, refused = len(siege.held), dict(siege.dropped), siege.connect_errors
    within = sum(1 for p in probes if p.error is None and p.seconds <= LIMIT_SECONDS)
    return {
        "idle": idle,
        "slow": slow,
        "heldAtEnd": held,
        "droppedByServer": dropped,
        "connectErrors": refused,
        "probes": len(probes),
        "within1s": within,
        "ok": within == len(probes),
        "errors": sorted({p.error for p in probes if p.error}),
        **latency_summary([p.seconds for p in probes]),
        "recoverySeconds": recovery_seconds(host, port),
    }


def show(label: str, figures: dict) -> None:
    say(
        f"  {label:<7} {figures['idle']:>4} idle + {figures['slow']:>4} slow: "
        f"{figures['within1s']:>2}/{figures['probes']} probes within 1 s, "
        f"p50 {figures['p50Ms']:8.1f} ms  p95 {figures['p95Ms']:8.1f} ms  "
        f"max {figures['maxMs']:8.1f} ms  errors {figures['errors'] or 0}  "
        f"(server dropped {sum(figures['droppedByServer'].values())}, "
        f"recovered in {figures['recoverySeconds']} s)"
    )


# -- what plain `warren api` withstands -----------------------------------------------------


def sweep(host: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    """Idle-only, then slow-only sieges of growing size, until one fails; the largest that
    held (every probe within 1 s) and the smallest that did not, for each kind."""
    quick = argparse.Namespace(**{**vars(args), "probes": 10, "seconds": 5.0})
    found: dict[str, Any] = {}
    for kind, sizes in (("idle", SWEEP_IDLE), ("slow", SWEEP_SLOW)):
        held, failed, steps = 0, None, []
        for size in sizes:
            counts = {"idle": size if kind == "idle" else 0, "slow": size if kind == "slow" else 0}
            figures = besiege(host, port, counts["idle"], counts["slow"], quick)
            show("sweep", figures)
            steps.append(figures)
            if not figures["ok"]:
                failed = size
                break
            held = size
        found[kind] = {"withstood": held, "failedAt": failed, "steps": steps}
    return found


# -- nginx ----------------------------------------------------------------------------------


def start_nginx(env: BenchEnv, api_port: int) -> tuple[int, str] | str:
    """nginx with the recommended site in front of the API: (port, version), or why not."""
    binary = front.nginx_binary()
    if binary is None:
        return front.NOT_INSTALLED
    version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
    port = harness.free_port()
    prefix = Path(env.workdir) / "nginx"
    conf = front.write_config(prefix, port, f"127.0.0.1:{api_port}")
    process = env.start("nginx", front.nginx_argv(binary, prefix, conf))
    harness.wait_until(
        lambda: probe("127.0.0.1", port, 2).error is None,
        30,
        "nginx to pass /health on",
        interval=0.2,
        process=process,
    )
    return port, version


# -- the benchmark --------------------------------------------------------------------------


def raise_open_files(needed: int) -> int:
    """Raise this process's soft limit on open files towards `needed` (up to the hard
    limit): each held connection is a descriptor here, and nginx and the API inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise BenchError(f"need {needed} open files, the hard limit is {hard} (ulimit -Hn)")
    return soft


def measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    targets = {name.strip() for name in args.targets.split(",") if name.strip()}
    raise_open_files(2 * (args.idle + args.slow) + args.probes + 1024)
    api = env.start_api(workers=2, threads=8, WARREN_API_TOKENS=TOKEN)
    api_port = int(api.url.rsplit(":", 1)[1])
    say(f"warren api on {api.url} (2 processes x 8 threads, gunicorn gthread), no worker")
    results: dict[str, Any] = {
        "idle": args.idle,
        "slow": args.slow,
        "limitSeconds": LIMIT_SECONDS,
        "probeTimeoutSeconds": args.probe_timeout,
    }
    if "plain" in targets:
        results["plain"] = besiege("127.0.0.1", api_port, args.idle, args.slow, args)
        show("plain", results["plain"])
        if args.sweep:
            results["plainWithstands"] = sweep("127.0.0.1", api_port, args)
    if "nginx" in targets:
        started = start_nginx(env, api_port)
        if isinstance(started, str):
            say(f"nginx: skipped, {started}")
            results["nginx"] = {"skipped": started}
        else:
            port, version = started
            say(f"{version} on http://127.0.0.1:{port} in front of it (deploy/nginx)")
            results["nginx"] = {
                "version": version,
                **besiege("127.0.0.1", port, args.idle, args.slow, args),
            }
            show("nginx", results["nginx"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=250, help="silent connections (250)")
    parser.add_argument("--slow", type=int, default=250, help="never-ending requests (250)")
    parser.add_argument("--trickle", type=float, default=2, help="s between slow bytes (2)")
    parser.add_argument("--settle", type=float, default=2, help="s before probing (2)")
    parser.add_argument("--probes", type=int, default=20, help="/health probes (20)")
    parser.add_argument("--seconds", type=float, default=10, help="probing time (10)")
    parser.add_argument("--probe-timeout", type=float, default=10, help="per probe (10 s)")
    parser.add_argument("--targets", default="plain,nginx", help="plain,nginx (both)")
    parser.add_argument(
        "--sweep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="find what plain warren api withstands (on)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=900, help="time limit of the whole run (900)"
    )
    args = parser.parse_args()
    harness.run("slowclients", measure, args, args.max_seconds)


if __name__ == "__main__":
    main()
