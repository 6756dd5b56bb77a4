"""Job types for the benchmarks, loaded with `WARREN_JOB_MODULES=actors,bench.jobtypes`.

`bench-noop` does nothing: what a benchmark measures with it is Warren's own cost per job.
"""

from pydantic import BaseModel, ConfigDict

from service.registry import job_type


class Noop(BaseModel):
    """An empty payload: `{}`."""

    model_config = ConfigDict(extra="forbid")


@job_type("bench-noop", payload=Noop, max_attempts=1, timeout_seconds=60)
def noop(payload: Noop) -> None:
    return None
