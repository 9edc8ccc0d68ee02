"""Test helpers for background jobs: run what the queue holds, in this process, for real."""

from compounding import jobs
from compounding.extensions import db


def drain(app) -> int:
    """Run every task waiting on the app's queue (and those they queue); answer how many ran."""
    huey = jobs.jobs(app).huey
    ran = 0
    while (task := huey.dequeue()) is not None:
        # In-memory SQLite is one connection shared by every session: end the test's own
        # transaction so the task's can begin (a real worker has a connection of its own).
        db.session.commit()
        huey.execute(task)
        ran += 1
    db.session.expire_all()  # the tasks wrote through sessions of their own
    return ran


def queued(app) -> int:
    """How many tasks wait on the app's queue."""
    return jobs.jobs(app).huey.pending_count()
