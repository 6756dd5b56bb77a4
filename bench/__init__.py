"""Warren's benchmarks: `python -m bench.<name> --help`.

Each benchmark creates its own database and queue prefix (`warren_bench_<id>`), starts the
processes it measures, prints a few human lines and ends with one JSON line of its results.
Everything it created is removed at the end, also on failure or Ctrl-C.

- `bench.throughput`: enqueue and drain rates of no-op jobs, against plain Dramatiq and
  Celery (`bench.plain`, `bench.celeryapp`), with the costs per job (`bench.costs`).
- `bench.latency`: `POST /jobs` latency at a steady request rate, against a plain Falcon
  endpoint that calls Dramatiq's `send` (`bench.plainapi`), and `POST /jobs/batch` rate.
- `bench.scale`: `GET /jobs` filters, cursor paging and `GET /stats` on a large table.
- `bench.memory`: a worker's memory before and after enqueueing far-future jobs.
"""
