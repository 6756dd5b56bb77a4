"""Cron schedules: each slot fires once however many schedulers run, missed slots follow
`catchUp`, time zones keep their hours across daylight-saving changes. A test clock (the
`now` the scheduler fires at) stands in for waiting."""

import itertools
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from service import schedules
from service.broker import Publisher, build_broker
from service.scheduler import Scheduler, Tick
from service.store import schedules as store

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # a Monday


def create(warren, **fields):
    body = {"name": "every-minute", "cron": "* * * * *", "type": "test-noop", "payload": {}}
    return warren.schedules.create(body | fields)


def start_at(engine, name: str, when: datetime) -> None:
    """Put the schedule's next slot at `when` (as if created just before it)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE schedules SET next_run_at = :t WHERE name = :n"), {"t": when, "n": name}
        )


def fire(scheduler: Scheduler, now: datetime) -> int:
    tick = Tick()
    scheduler._fire_schedules(tick, now)
    return tick.fired


def slots_fired(engine, name: str) -> list[datetime]:
    with engine.connect() as conn:
        return list(
            conn.scalars(
                sa.text(
                    "SELECT scheduled_for FROM jobs WHERE schedule_name = :n ORDER BY scheduled_for"
                ),
                {"n": name},
            )
        )


@pytest.fixture
def schedulers(engine, settings, clean):
    made = []

    def make() -> Scheduler:
        publisher = Publisher(build_broker(settings), settings)
        made.append(publisher)
        return Scheduler(engine, publisher, settings)

    yield make
    for publisher in made:
        publisher.close()


def test_two_schedulers_fire_each_of_30_slots_once(warren, engine, schedulers):
    create(warren)
    start_at(engine, "every-minute", T0)
    first, second = schedulers(), schedulers()

    for minute in range(30):
        now = T0 + timedelta(minutes=minute, seconds=1)
        racers = [threading.Thread(target=fire, args=(s, now)) for s in (first, second)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()

    assert slots_fired(engine, "every-minute") == [T0 + timedelta(minutes=m) for m in range(30)]
    schedule = warren.schedules.get("every-minute")
    assert schedule.next_run_at == T0 + timedelta(minutes=30)
    assert schedule.last_job_id is not None


@pytest.mark.parametrize(
    ("catch_up", "fired"),
    [("all", [10, 20, 30, 40, 50]), ("latest", [50]), ("none", [])],
)
def test_slots_missed_while_down_follow_catch_up(warren, engine, schedulers, catch_up, fired):
    create(warren, name="tenth", cron="*/10 * * * *", catchUp=catch_up)
    start_at(engine, "tenth", T0 + timedelta(minutes=10))

    fire(schedulers(), T0 + timedelta(minutes=52))  # down for five slots, 08:10 to 08:50

    assert slots_fired(engine, "tenth") == [T0 + timedelta(minutes=m) for m in fired]
    assert warren.schedules.get("tenth").next_run_at == T0 + timedelta(minutes=60)


def test_catch_up_none_still_fires_a_slot_on_time(warren, engine, schedulers):
    create(warren, catchUp="none")
    start_at(engine, "every-minute", T0)

    assert fire(schedulers(), T0 + timedelta(seconds=2)) == 1


def test_a_schedule_moved_back_onto_a_slot_it_fired_fires_it_once_and_blocks_no_other(
    warren, engine, schedulers
):
    create(warren, name="daily", cron="0 8 * * *")
    start_at(engine, "daily", T0)
    scheduler = schedulers()
    assert fire(scheduler, T0 - timedelta(seconds=4)) == 1  # fired ahead, within the lead
    start_at(engine, "daily", T0)  # enabled again within the lead: back onto the fired slot
    create(warren, catchUp="none")
    start_at(engine, "every-minute", T0 + timedelta(minutes=1))

    fired = fire(scheduler, T0 + timedelta(minutes=1))

    assert fired == 1  # every-minute's slot; the daily one had its job
    assert slots_fired(engine, "daily") == [T0]
    assert slots_fired(engine, "every-minute") == [T0 + timedelta(minutes=1)]
    assert warren.schedules.get("daily").next_run_at == T0 + timedelta(days=1)


@pytest.mark.parametrize(
    ("day", "local", "utc"),
    [
        ("2026-03-28", "02:30 CET", datetime(2026, 3, 28, 1, 30, tzinfo=UTC)),
        ("2026-03-29", "no 02:30: fires at 03:00 CEST", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        ("2026-03-30", "02:30 CEST", datetime(2026, 3, 30, 0, 30, tzinfo=UTC)),
        ("2026-10-25", "02:30 twice: fires once, CEST", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        ("2026-10-26", "02:30 CET", datetime(2026, 10, 26, 1, 30, tzinfo=UTC)),
    ],
)
def test_a_berlin_schedule_keeps_its_hour_across_dst(day, local, utc):
    after = datetime.fromisoformat(f"{day}T00:00:00+00:00") - timedelta(hours=3)
    following = schedules.slots("30 2 * * *", "Europe/Berlin", after)

    assert next(following).astimezone(UTC) == utc, local
    assert next(following).astimezone(UTC) - utc >= timedelta(hours=23)  # once that day


@pytest.mark.parametrize(
    ("day", "fired"),
    [
        ("2026-03-29", []),  # no 02:00 to 02:59 that night
        ("2026-10-25", ["00:00", "00:30", "01:00", "01:30"]),  # 02:00 to 02:59 twice
    ],
)
def test_a_schedule_every_n_minutes_follows_the_clock_as_cron_does(day, fired):
    """`*/30 2 * * *` is every half hour the clock shows 2: none on the night the clocks go
    forward, four on the night they go back (Vixie cron and cronie do the same)."""
    midnight = datetime.fromisoformat(f"{day}T00:00:00+00:00") - timedelta(hours=3)
    following = schedules.slots("*/30 2 * * *", "Europe/Berlin", midnight)

    slots = itertools.takewhile(lambda t: t < midnight + timedelta(hours=12), following)
    assert [t.astimezone(UTC).strftime("%H:%M") for t in slots] == fired


def test_a_berlin_schedule_fires_once_on_the_day_the_clocks_go_back(warren, engine, schedulers):
    create(warren, name="berlin", cron="30 2 * * *", timezone="Europe/Berlin")
    start_at(engine, "berlin", datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    scheduler = schedulers()

    for minutes in range(0, 180, 5):  # 02:00 CEST to 03:55 CET, every five minutes
        fire(scheduler, datetime(2026, 10, 25, 0, 0, tzinfo=UTC) + timedelta(minutes=minutes))

    assert slots_fired(engine, "berlin") == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC)]


def test_a_paused_schedule_fires_nothing_and_resumes_from_now(warren, engine, schedulers):
    create(warren)
    start_at(engine, "every-minute", T0)
    warren.schedules.update("every-minute", {"enabled": False})

    assert fire(schedulers(), T0 + timedelta(minutes=3)) == 0
    resumed = warren.schedules.update("every-minute", {"enabled": True})
    assert resumed.next_run_at > datetime.now(UTC)


def test_a_declared_schedule_is_synced_and_keeps_its_pause(warren, engine, schedulers):
    registry = warren.registry
    registry.schedule("nightly", "@daily", type="test-noop", payload={}, catch_up="none")
    try:
        with engine.begin() as conn:
            [synced] = schedules.sync_declared(conn, registry, warren.settings)
        assert synced.declared_in_code and synced.cron == "@daily"
        assert synced.catch_up == "none"
        warren.schedules.update("nightly", {"enabled": False})
        with engine.begin() as conn:
            [again] = schedules.sync_declared(conn, registry, warren.settings)
        assert again.enabled is False
    finally:
        registry.schedules.pop("nightly")


def test_run_fires_now_and_the_job_names_its_schedule(warren, worker):
    create(warren, cron="@yearly")

    job = warren.schedules.run("every-minute")

    assert job.schedule_name == "every-minute"
    assert warren.schedules.get("every-minute").last_job_id == job.id
    listed = warren.list({"schedule": "every-minute"}).jobs
    assert [j.id for j in listed] == [job.id]


def test_deleting_a_schedule_keeps_its_jobs(warren, engine):
    create(warren)
    job = warren.schedules.run("every-minute")

    warren.schedules.delete("every-minute")

    with engine.connect() as conn:
        assert store.every(conn) == []
    assert warren.get(job.id).schedule_name == "every-minute"


def test_a_wrong_declaration_is_left_out_and_the_others_are_synced(warren, engine, caplog):
    registry = warren.registry
    registry.schedule("good", "@hourly", type="test-noop", payload={})
    registry.schedule("bad", "@sometimes", type="test-noop", payload={})
    try:
        with engine.begin() as conn:
            synced = schedules.sync_declared(conn, registry, warren.settings)
    finally:
        registry.schedules.pop("good")
        registry.schedules.pop("bad")

    assert [s.name for s in synced] == ["good"]
    assert "schedule 'bad' declared in code is left out" in caplog.text
