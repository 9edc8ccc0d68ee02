"""The work the queue runs, by name: export jobs, and the scheduled jobs that keep things moving.

Each entry is a plain function of the services; `register` binds them to one app's queue.
Scheduled ones (Huey's periodic tasks) run on every consumer that has the scheduler on
(`flask worker`, `flask run`); each is safe to run twice at once, as two workers may.
"""

from flask import Flask
from huey import crontab


def _run_export(job_id: int) -> None:
    from ..exports import jobs as export_runner

    export_runner.run_job(job_id)


def _expire_exports() -> None:
    from ..services import export_jobs

    export_jobs.expire_due()


def _recover_jobs() -> None:
    from ..services import export_jobs

    export_jobs.recover()


def _sweep_exports() -> None:
    from ..exports import jobs as export_runner

    export_runner.sweep_work_folder()


def _prepare_digests() -> None:
    from ..services import digests, mail

    digests.prepare_due()
    mail.send_due()


def _send_mail() -> None:
    from ..services import mail

    mail.send_due()


# name -> (function, Huey options)
TASKS = {
    "export.run": (_run_export, {}),
    "mail.send": (_send_mail, {}),
}
# name -> (function, when): minutes of the hour in UTC; each site's digest hour is judged inside.
PERIODIC = {
    "jobs.recover": (_recover_jobs, crontab(minute="*")),
    "exports.expire": (_expire_exports, crontab(minute="*/10")),
    "digests.prepare": (_prepare_digests, crontab(minute="*/15")),
    "mail.retry": (_send_mail, crontab(minute="*/5")),
}


def register(app: Flask, jobs) -> None:
    from . import run_in_app

    for name, (fn, options) in TASKS.items():
        jobs.tasks[name] = jobs.huey.task(name=name, **options)(run_in_app(app, fn))
    for name, (fn, when) in PERIODIC.items():
        jobs.tasks[name] = jobs.huey.periodic_task(when, name=name)(run_in_app(app, fn))
    # A worker that starts looks at once for jobs a stopped worker left running or a lost enqueue left waiting.
    jobs.huey.on_startup(name="jobs.recover")(run_in_app(app, _recover_jobs))
    # And deletes the workbook files a stopped worker left behind (they hold patient data).
    jobs.huey.on_startup(name="exports.sweep")(run_in_app(app, _sweep_exports))
