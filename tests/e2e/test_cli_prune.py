"""`warren prune`: what the CLI deletes, or with `--dry-run` would delete."""

import json

import sqlalchemy as sa

from tests.e2e.test_cli import enqueue, ok


def test_prune_dry_run_then_prune(run_cli, engine, clean):
    job_id = enqueue(run_cli, "test-noop", {}, "--delay", "3600")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE jobs SET status = 'completed', created_at = now() - interval '8 days',"
                " completed_at = now() - interval '8 days' WHERE id = :id"
            ),
            {"id": job_id},
        )

    counted = json.loads(ok(run_cli("prune", "--dry-run", "--json")))
    assert counted["dryRun"] is True and counted["wouldDelete"]["completed"] == 1
    assert "would delete" in ok(run_cli("prune", "--dry-run"))

    deleted = json.loads(ok(run_cli("prune", "--json")))
    assert deleted == {
        "dryRun": False,
        "deleted": {"completed": 1, "cancelled": 0, "failed": 0, "deadLetters": 0},
    }
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM jobs WHERE id = :id"), {"id": job_id}) == 0
