"""`GET /health` and `GET /stats` read RabbitMQ through one shared connection: calls in a
loop cannot make RabbitMQ open a connection each, and a lost connection is opened again."""

import logging

import pika
import pytest

from service import brokerview
from service.brokerview import BrokerView


@pytest.fixture
def opened(monkeypatch) -> list:
    """Every connection the view opens."""
    connections = []
    real = pika.BlockingConnection

    def counted(parameters):
        connections.append(real(parameters))
        return connections[-1]

    monkeypatch.setattr(brokerview.pika, "BlockingConnection", counted)
    return connections


def test_a_hundred_health_and_stats_calls_use_one_connection(settings, opened):
    view = BrokerView(settings, ttl=0.0)
    try:
        for _ in range(100):
            assert view.health() == "ok"
            assert f"{settings.queue_prefix}.normal" in view.depths()
    finally:
        view.close()

    assert len(opened) == 1


def test_the_health_check_is_kept_for_its_ttl(settings, opened):
    view = BrokerView(settings, ttl=60.0)
    try:
        assert view.health() == "ok"
        opened[0].close()  # a check now would have to reconnect

        assert view.health() == "ok"
        assert len(opened) == 1
    finally:
        view.close()


def test_a_lost_connection_is_opened_again(settings, opened):
    view = BrokerView(settings, ttl=0.0)
    try:
        assert view.health() == "ok"
        opened[0].close()  # as when RabbitMQ restarts

        assert view.health() == "ok"
        opened[1].close()
        assert f"{settings.queue_prefix}.normal" in view.depths()
        assert len(opened) == 3
    finally:
        view.close()


def test_an_unreachable_broker_is_named(settings):
    view = BrokerView(settings.model_copy(update={"broker_url": "amqp://guest:guest@127.0.0.1:1/"}))

    assert view.health() == "unreachable: AMQPConnectionError"
    assert view.depths() == {}


def test_queues_no_worker_declared_yet_are_left_out_without_a_warning(settings, caplog):
    undeclared = settings.model_copy(update={"queue_prefix": f"{settings.queue_prefix}-none"})
    view = BrokerView(undeclared)
    try:
        with caplog.at_level(logging.DEBUG):
            assert view.depths() == {}
    finally:
        view.close()

    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
