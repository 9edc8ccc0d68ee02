"""The job queue's own behaviour: its worker threads yield the CPU to the web requests beside them."""

import os
import threading

import pytest

from compounding import jobs

pytestmark = pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no per-thread priority here")


def _niceness_after_startup(app) -> tuple[int, int]:
    found = {}

    def worker_thread():
        for hook in jobs.jobs(app).huey._startup.values():
            if getattr(hook, "func", None) is jobs.lower_priority:
                hook()
        found["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    thread = threading.Thread(target=worker_thread)
    thread.start()
    thread.join()
    return found["worker"], os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_worker_thread_lowers_its_own_priority_and_no_one_else_s(app):
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker, this_thread = _niceness_after_startup(app)
    assert worker == max(before, app.config["JOBS_NICE"]) == max(before, 10)
    assert this_thread == before


@pytest.mark.parametrize("config_overrides", [{"JOBS_NICE": 0}], indirect=True)
def test_niceness_zero_leaves_the_worker_as_it_was(app):
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert _niceness_after_startup(app) == (before, before)
