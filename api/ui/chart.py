"""The overview's chart of jobs finished per minute, as SVG drawn on the server: one stacked
bar per minute, completed below and failed above, with a tooltip each."""

from dataclasses import dataclass

from service.activity import Minute

WIDTH = 720
HEIGHT = 160
#: Room left of the bars for the scale, and below them for the time labels.
LEFT = 40
BOTTOM = 20
GAP = 2


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    completed_y: float
    completed_height: float
    failed_y: float
    failed_height: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    plot_height: int
    scale: int
    bars: list[Bar]
    completed: int
    failed: int


def throughput(minutes: list[Minute]) -> Chart:
    """The chart of `minutes` (oldest first); the scale is the busiest minute, at least 1."""
    plot_height = HEIGHT - BOTTOM
    scale = max([m.completed + m.failed for m in minutes] + [1])
    step = (WIDTH - LEFT) / max(len(minutes), 1)
    bars = []
    for index, minute in enumerate(minutes):
        completed = plot_height * minute.completed / scale
        failed = plot_height * minute.failed / scale
        bars.append(
            Bar(
                x=round(LEFT + index * step, 1),
                width=round(max(step - GAP, 1), 1),
                completed_y=round(plot_height - completed, 1),
                completed_height=round(completed, 1),
                failed_y=round(plot_height - completed - failed, 1),
                failed_height=round(failed, 1),
                label=f"{minute.start:%H:%M} UTC: {minute.completed} completed,"
                f" {minute.failed} failed",
            )
        )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        plot_height=plot_height,
        scale=scale,
        bars=bars,
        completed=sum(m.completed for m in minutes),
        failed=sum(m.failed for m in minutes),
    )
