"""What a job costs the machine: CPU of PostgreSQL, of the worker and of RabbitMQ, and WAL.

A `Snapshot` reads /proc once (each process's `stat` is world-readable, whoever owns it) and
PostgreSQL's WAL position; `per_job(start, end, jobs)` turns two snapshots into costs per job:

- PostgreSQL CPU: utime + stime + cutime + cstime summed over every process whose name starts
  with `postgres` (the postmaster, its background processes and every backend, also those of
  connections opened in between), at the end minus at the start. A backend that exits in
  between is counted through the postmaster, which reaps it: its time moves to the
  postmaster's cutime/cstime. (A process that exits while a snapshot reads /proc can be
  counted twice or not at all; reading takes a few milliseconds.) This is the whole server:
  whatever else runs on it at the same time (other benchmarks, tests) is counted too.
- "db backends": the same for just the backends connected to the run's own database at the
  end (from `pg_stat_activity`), with those that connected in between counted whole. Others'
  load is left out, and so are the background processes (WAL writer, checkpointer,
  autovacuum) and backends of the run's database that exited in between.
- worker CPU: utime + stime + cutime + cstime summed over the worker's process tree(s): its
  threads are in each process's figures, and a child process that exited is in its parent's.
- RabbitMQ CPU: the same over the tree of `beam.smp` (the Erlang VM: every broker thread),
  for the whole broker.
- WAL: bytes between the two `pg_current_wal_lsn()` positions, which is what
  `pg_wal_lsn_diff` computes; for the whole server, like the CPU figure.

Clock ticks are 1/`SC_CLK_TCK` s (10 ms): over a window of a few seconds and thousands of jobs,
that is far below the figures' noise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    comm: str
    ppid: int
    ticks: int  # utime + stime + cutime + cstime


def read_proc() -> dict[int, ProcStat]:
    """{pid: ProcStat} of every live process (zombies too: their time is not reaped yet)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ... utime stime cutime cstime ..."; comm may hold spaces
        # and parentheses, so split at the last one
        head, tail = text.rsplit(")", 1)
        fields = tail.split()
        utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
        comm = head.split("(", 1)[1]
        stats[int(entry.name)] = ProcStat(comm, int(fields[1]), utime + stime + cutime + cstime)
    return stats


def tree_pids(stats: dict[int, ProcStat], roots: Iterable[int]) -> set[int]:
    """`roots` and all their descendants among `stats`."""
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    tree: set[int] = set()
    todo = [pid for pid in roots if pid in stats]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, []))
    return tree


def parse_lsn(lsn: str) -> int:
    """A WAL position `16/B374D848` as a byte count."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass(frozen=True)
class Snapshot:
    at: float
    postgres: dict[int, int]  # pid -> ticks of every postgres process
    db_backends: frozenset[int]  # pids of the backends connected to the run's database
    worker: int  # ticks of the worker tree(s)
    rabbit: int  # ticks of the beam.smp tree
    wal: int  # bytes


def snapshot(engine: sa.Engine, worker_pids: Sequence[int]) -> Snapshot:
    """CPU ticks of PostgreSQL, of the trees of `worker_pids` and of RabbitMQ, and the WAL
    position, now."""
    with engine.connect() as conn:
        wal = parse_lsn(conn.scalar(sa.text("SELECT pg_current_wal_lsn()::text")))
        backends = frozenset(
            conn.scalars(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
        )
    at = time.monotonic()
    stats = read_proc()
    postgres = {pid: s.ticks for pid, s in stats.items() if s.comm.startswith("postgres")}
    beams = [pid for pid, s in stats.items() if s.comm == "beam.smp"]
    return Snapshot(
        at=at,
        postgres=postgres,
        db_backends=backends,
        worker=sum(stats[pid].ticks for pid in tree_pids(stats, worker_pids)),
        rabbit=sum(stats[pid].ticks for pid in tree_pids(stats, beams)),
        wal=wal,
    )


def _ms(ticks: int) -> float:
    return 1000 * ticks / CLOCK_TICKS


def per_job(start: Snapshot, end: Snapshot, jobs: int) -> dict[str, Any]:
    """The costs per job of `jobs` jobs run between two snapshots."""
    postgres = sum(end.postgres.values()) - sum(start.postgres.values())
    backends = sum(
        ticks - start.postgres.get(pid, 0)
        for pid, ticks in end.postgres.items()
        if pid in end.db_backends
    )
    return {
        "jobs": jobs,
        "seconds": round(end.at - start.at, 3),
        "pgMsPerJob": round(_ms(postgres) / jobs, 3),
        "pgDbBackendsMsPerJob": round(_ms(backends) / jobs, 3),
        "workerMsPerJob": round(_ms(end.worker - start.worker) / jobs, 3),
        "rabbitMsPerJob": round(_ms(end.rabbit - start.rabbit) / jobs, 3),
        "walBytesPerJob": round((end.wal - start.wal) / jobs, 1),
    }


def describe(cost: dict[str, Any]) -> str:
    """`pg 0.35 ms/job (db backends 0.30)  worker 0.80 ms/job  rabbit 0.20 ms/job  wal 1,800
    B/job`."""
    return (
        f"pg {cost['pgMsPerJob']:.2f} ms/job (db backends {cost['pgDbBackendsMsPerJob']:.2f})  "
        f"worker {cost['workerMsPerJob']:.2f} ms/job  rabbit {cost['rabbitMsPerJob']:.2f} ms/job  "
        f"wal {cost['walBytesPerJob']:,.0f} B/job"
    )
