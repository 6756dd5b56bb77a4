"""The job store: the only code that writes `jobs`, `job_attempts`, `dead_letters`,
`schedules`, the kept counts (`job_count_deltas`, `job_counts`, `job_minutes`), `pauses` and
`processes`.

Its verbs take a connection in the caller's transaction and return the rows they wrote
(`RETURNING`), so no write is followed by a read. Every status change is a conditional
UPDATE that names the status it expects: a write that matches no row lost a race and changes
nothing. The same statement records the change in the kept counts (`sql.move`).

- `jobs`: enqueue, cancel, retry, reschedule, replay, prune;
- `publishing`: what to publish (the relay's, the scheduler's, the lost), and the marks;
- `attempts`: a worker's claims and completions in batches, failures, cancels, leases;
- `dead_letters`: record, resolve, replay, purge and prune dead letters;
- `schedules`: create, change, delete and sync schedules; lock the due ones and move them on;
- `counts`: fold and read the kept counts, and the jobs finished per minute;
- `pauses`: pause and resume a tier or a job type; read what is paused;
- `processes`: the heartbeats of workers and schedulers;
- `sql`: the status move, the due-time rule, the PL/pgSQL a worker's batch runs, and the
  driver-direct execution of the two hot statements.
"""
