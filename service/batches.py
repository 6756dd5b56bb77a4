"""Taking work in batches from a queue that many threads feed: the shape shared by the
worker's group commit and the API's relay."""

import queue
from typing import TypeVar

T = TypeVar("T")


def take_batch(items: "queue.SimpleQueue[T | None]", limit: int) -> tuple[list[T], bool]:
    """Wait for one item, then take every item already waiting, up to `limit` in all. Returns
    the items and whether `None`, the signal to stop, was met (after the items before it)."""
    first = items.get()
    if first is None:
        return [], True
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
