"""The job store: the only code that writes `jobs`, `job_attempts`, `dead_letters`,
`schedules` and the kept counts (`job_count_deltas`, `job_counts`).

Its verbs take a connection in the caller's transaction and return the rows they wrote
(`RETURNING`), so no write is followed by a read. Every status change is a conditional
UPDATE that names the status it expects: a write that matches no row lost a race and changes
nothing. The same statement records the change in the kept counts (`sql.move`).

- `jobs`: enqueue, publish, claim, complete, fail, cancel, retry, reschedule, lease takeover,
  prune;
- `dead_letters`: record, resolve, replay, purge and prune dead letters;
- `schedules`: create, change, delete and sync schedules; lock the due ones and move them on;
- `counts`: fold and read the kept counts;
- `sql`: the statuses' SQL, the due-time rule and the PL/pgSQL a worker's batch runs.
"""
