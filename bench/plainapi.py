"""What users would write instead of Warren's `POST /jobs`: the baseline of `bench.latency`.

A plain Falcon app, served by gunicorn exactly as `warren api` serves Warren's (the same worker
class, processes, threads and access log: `BenchEnv.start_app`), with `BENCH_PLAINAPI_QUEUE`
and `WARREN_BROKER_URL` in the environment:

- `POST /jobs` parses the JSON body, calls a Dramatiq actor's `.send()` on a `RabbitmqBroker`
  with publisher confirms (`confirm_delivery=True`) and Dramatiq's default middleware,
  records nothing, and answers 201 with the message id;
- `GET /health` answers 200, so the benchmark knows it is up.

The actor runs nowhere: its messages stay in the queue, as Warren's jobs do when no worker
runs. `create_app()` is called in each gunicorn process, so each has its own broker (and,
per thread, its own connection).
"""

import os

import dramatiq
import falcon
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from service.broker import connection_url

ACTOR_NAME = "plain_job"


class Jobs:
    def __init__(self, actor: dramatiq.Actor) -> None:
        self.actor = actor

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.get_media()
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise falcon.HTTPBadRequest(description='expected {"type": ..., "payload": ...}')
        message = self.actor.send(body["type"], body.get("payload"))
        resp.status = falcon.HTTP_201
        resp.media = {"jobId": message.message_id}


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


def create_app() -> falcon.App:
    """What gunicorn serves: `bench.plainapi:create_app()`."""
    broker = RabbitmqBroker(
        url=connection_url(os.environ["WARREN_BROKER_URL"]), confirm_delivery=True
    )
    dramatiq.set_broker(broker)

    def plain_job(type: str, payload: object) -> None:
        return None

    actor = dramatiq.actor(
        plain_job,
        actor_name=ACTOR_NAME,
        queue_name=os.environ["BENCH_PLAINAPI_QUEUE"],
        broker=broker,
    )
    app = falcon.App()
    app.add_route("/jobs", Jobs(actor))
    app.add_route("/health", Health())
    return app
