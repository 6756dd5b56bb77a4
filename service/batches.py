"""Taking work in batches from a queue that many threads feed: how the worker's group commit
gathers the claims and completions of its threads."""

import queue
import time
from typing import TypeVar

T = TypeVar("T")


def take_batch(
    items: "queue.SimpleQueue[T | None]", limit: int, not_before: float = 0.0
) -> tuple[list[T], bool]:
    """Wait for one item, then, once `time.monotonic()` reaches `not_before`, take every item
    already waiting, up to `limit` in all. Returns the items and whether `None`, the signal to
    stop, was met (after the items before it).

    A caller that passes `not_before = <its last batch> + interval` is paced like Nagle's
    algorithm: after a quiet spell the first item goes at once; under load the items of an
    interval share one batch instead of each paying a round trip."""
    first = items.get()
    if first is None:
        return [], True
    wait = not_before - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    batch = [first]
    while len(batch) < limit:
        try:
            item = items.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return batch, True
        batch.append(item)
    return batch, False
