"""Celery 5 beside Warren in `bench.throughput`: the same no-op job on the same RabbitMQ.

Run as one worker process with

    python -m celery -A bench.celeryapp worker -P threads -c T -n bench1@%h \\
        --without-gossip --without-mingle --without-heartbeat

and `WARREN_BROKER_URL`, `BENCH_CELERY_QUEUE` (the queue to consume) and
`BENCH_CELERY_COUNT_DIR` in the environment; `bench.throughput` starts P of them, so that
P processes x T threads match `warren worker --processes P --threads T`.

Configured to be comparable with Warren's and plain Dramatiq's workers:
- the queue and its direct exchange have the run's prefix (`warren_bench_<id>.celery`), both
  durable, messages persistent; nothing else is declared: no result backend, no events, no
  remote control (pidbox), no gossip or mingle (the `celeryev` and `celery.pidbox` exchanges);
- `task_acks_late`: a message is acknowledged after its task ran, as Dramatiq does;
- `worker_prefetch_multiplier = 4` (Celery's default): each process prefetches four times its
  thread count (`-c`); `warren worker` holds eight by default (`worker_prefetch`).

The task `bench_celery_noop` does nothing but count itself (`bench.counting`, as plain
Dramatiq's actor does).
"""

import os

from celery import Celery
from kombu import Exchange, Queue

from bench.counting import count_run

TASK_NAME = "bench_celery_noop"
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def make_app(broker_url: str, queue: str) -> Celery:
    """A Celery app whose every task goes to `queue` (through an exchange of the same name)."""
    app = Celery("warren_bench", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_queues=[Queue(queue, Exchange(queue, type="direct"), routing_key=queue)],
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        task_create_missing_queues=False,
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        worker_prefetch_multiplier=4,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        accept_content=["json"],
        task_serializer="json",
    )

    @app.task(name=TASK_NAME, ignore_result=True, shared=False)
    def noop() -> None:
        count_run(os.environ["BENCH_CELERY_COUNT_DIR"])

    return app


#: What `celery -A bench.celeryapp` loads.
app = make_app(
    os.environ.get("WARREN_BROKER_URL", DEFAULT_URL),
    os.environ.get("BENCH_CELERY_QUEUE", "warren_bench.celery"),
)
