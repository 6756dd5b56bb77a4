"""The scheduler's old name: `service.scheduler.Scheduler` was `service.dispatcher.Dispatcher`,
which stays importable for code written against it."""

from service.scheduler import Scheduler, Tick

Dispatcher = Scheduler

__all__ = ["Dispatcher", "Scheduler", "Tick"]
