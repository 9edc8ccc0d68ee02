"""Limits on every PostgreSQL connection, so a dead or hung database fails in seconds.

Three limits, because each catches a different failure:

- `connect_timeout` bounds opening a connection (refused, unroutable, or a server that
  accepts and never completes the handshake);
- the server's `statement_timeout` cancels a statement that runs too long (a lock wait, a
  runaway query), answered by the server itself;
- a client-side wait for each answer, for a server that keeps the socket open but answers
  nothing (frozen process or proxy): the kernel still acknowledges our packets, so neither
  TCP keepalives nor `tcp_user_timeout` notice it. They stay on for a dead peer's network.

Web requests get all three; one-off command-line tasks (migrations, backups, seed-scale)
keep only the first and the network ones, and so does a background job's transaction when
`flask run` runs it in the serving process (`unlimited_transaction`).
"""

from collections.abc import Mapping
from contextlib import contextmanager

import sqlalchemy as sa
from flask import Flask

from .extensions import db

try:  # PostgreSQL's driver; the embedded default (SQLite) runs without it.
    import psycopg
    from psycopg import errors as psycopg_errors
except ImportError:  # pragma: no cover
    psycopg = None


def engine_options(settings: Mapping, *, serving: bool) -> dict:
    """SQLAlchemy engine options: the configured ones, plus the limits for a PostgreSQL URL."""
    options = dict(settings.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    url = sa.make_url(settings["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "postgresql":
        return options
    connect_timeout = int(settings.get("DB_CONNECT_TIMEOUT") or 0)
    statement_ms = int(settings.get("DB_STATEMENT_TIMEOUT_MS") or 0) if serving else 0
    connect_args = {
        "connect_timeout": connect_timeout,
        # A peer gone from the network: unacknowledged data or silent keepalives end the connection.
        "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3, "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
        **({"options": f"-c statement_timeout={statement_ms}"} if statement_ms else {}),
        **options.get("connect_args", {}),
    }
    options["connect_args"] = connect_args
    options.setdefault("pool_pre_ping", True)
    options.setdefault("pool_timeout", int(settings.get("DB_POOL_TIMEOUT") or 5))
    return options


def answer_timeout(settings: Mapping, *, serving: bool) -> float | None:
    """Seconds to wait for any answer: the server had its statement timeout and a connect's worth more."""
    statement_ms = int(settings.get("DB_STATEMENT_TIMEOUT_MS") or 0)
    if not serving or not statement_ms:
        return None
    return statement_ms / 1000 + max(int(settings.get("DB_CONNECT_TIMEOUT") or 0), 2)


if psycopg is not None:
    class LimitedConnection(psycopg.Connection):
        """A psycopg connection that gives up on an answer after `answer_timeout` seconds.

        Giving up closes the connection (its protocol state is unknown), which SQLAlchemy reads
        as a disconnect: the pool is invalidated and the next checkout connects afresh.
        """

        answer_timeout: float | None = None

        def wait(self, gen, *args, **kwargs):
            limit = self.answer_timeout
            if limit is None or kwargs.get("timeout") is not None or len(args) > 1:
                return super().wait(gen, *args, **kwargs)
            try:
                return super().wait(gen, *args, timeout=limit, **kwargs)
            except psycopg_errors._WaitTimeout:
                self.pgconn.finish()
                raise psycopg.OperationalError(f"the database did not answer within {limit:g} s") from None


def init_app(app: Flask, *, serving: bool) -> None:
    """Open PostgreSQL connections as LimitedConnection when this process serves requests."""
    limit = answer_timeout(app.config, serving=serving)
    if psycopg is None or limit is None:
        return
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return

    @sa.event.listens_for(engine, "do_connect")
    def _connect_with_a_limit(dialect, connection_record, cargs, cparams):
        connection = LimitedConnection.connect(*cargs, **cparams)
        connection.answer_timeout = limit
        return connection


def _lift_answer_timeout(connection: sa.Connection) -> float | None:
    """Stop waiting for answers on a clock (LimitedConnection); answers the limit it had."""
    raw = connection.connection.dbapi_connection
    limit = getattr(raw, "answer_timeout", None)
    if limit is not None:
        raw.answer_timeout = None
    return limit


@contextmanager
def unlimited_transaction(session):
    """The session's transaction reads without the request limits (a background job's long reads).

    The server's limit is lifted for this transaction only (SET LOCAL) and the client's wait is put
    back afterwards, whatever happened, so the connection returns to the pool as it came.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    raw = connection.connection.dbapi_connection
    limit = _lift_answer_timeout(connection)
    try:
        yield
    finally:
        if limit is not None:
            raw.answer_timeout = limit


@contextmanager
def without_limits(connection: sa.Connection):
    """Lift the per-request limits from one connection, for a schema upgrade that may run long.

    The connection is discarded afterwards rather than returned to the pool unlimited.
    """
    if connection.dialect.name != "postgresql":
        yield connection
        return
    connection.exec_driver_sql("SET statement_timeout = 0")
    connection.commit()  # a migration opens its own transaction
    _lift_answer_timeout(connection)
    try:
        yield connection
    finally:
        connection.invalidate()
