"""Settings read from the environment, with defaults that need nothing from a newcomer."""

import os
import secrets
from pathlib import Path


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


SECOND_PERSON_CHOICES = ("all", "verify-only")


def second_person_rules(value: str | None) -> str:
    """`verify-only` only when spelt so; an unknown value keeps the safe default, `all`."""
    value = (value or "").strip().lower()
    return value if value in SECOND_PERSON_CHOICES else "all"


def instance_secret_key(instance_path: str) -> str:
    """Return the key kept in instance/secret_key, creating it on first start."""
    return _instance_key(Path(instance_path) / "secret_key")


def instance_audit_key(instance_path: str) -> str:
    """Return the audit chain's key kept in instance/audit_key, creating it on first start.

    It must never be stored in the database it protects; back it up apart from the database.
    """
    return _instance_key(Path(instance_path) / "audit_key")


def _instance_key(path: Path) -> str:
    """A random key in `path`, made once: several workers starting at once all read the same one."""
    if path.exists():
        key = path.read_text().strip()
        if not key:
            raise RuntimeError(f"The key file {path} is empty; restore it from a backup.")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    # Written private (0600) to a temporary name, then linked into place: a reader never sees
    # a half-written key, and only the first of several starting workers creates one.
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(partial, path)
        except FileExistsError:
            return _instance_key(path)
    finally:
        partial.unlink(missing_ok=True)
    return key


def from_environment() -> dict:
    """Settings for a running clinic; tests pass their own mapping instead."""
    database_url = os.environ.get("DATABASE_URL", "sqlite:///compounding.db")
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgres://")
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": os.environ.get("SECRET_KEY"),
        # The audit chain's key and its checkpoints live outside the database
        # (default: instance/audit_key, instance/audit_checkpoints.jsonl).
        "AUDIT_KEY": os.environ.get("AUDIT_KEY"),
        "AUDIT_CHECKPOINT_FILE": os.environ.get("AUDIT_CHECKPOINT_FILE"),
        "CLINIC_NAME": os.environ.get("CLINIC_NAME", "Demo Aesthetic Clinic"),
        "CLINIC_TIMEZONE": os.environ.get("CLINIC_TIMEZONE", "Europe/London"),
        "GS1_SEPARATOR": os.environ.get("GS1_SEPARATOR", ""),
        "AUTO_MIGRATE": _bool("AUTO_MIGRATE", True),
        "PREFERRED_URL_SCHEME": os.environ.get("PREFERRED_URL_SCHEME", "http"),
        "SESSION_COOKIE_SECURE": os.environ.get("PREFERRED_URL_SCHEME") == "https",
        "TRUSTED_PROXIES": int(os.environ.get("TRUSTED_PROXIES", "0") or 0),
        "SESSION_IDLE_MINUTES": int(os.environ.get("SESSION_IDLE_MINUTES", "30") or 30),
        "API_TOKEN_DAYS": int(os.environ.get("API_TOKEN_DAYS", "90") or 90),
        "RECALL_MIN_ATTEMPTS": int(os.environ.get("RECALL_MIN_ATTEMPTS", "2") or 2),
        "BACKDATE_HOURS": int(os.environ.get("BACKDATE_HOURS", "72") or 72),
        # A data logger's CSV file over this many bytes is refused (413).
        "READINGS_FILE_MAX_BYTES": int(os.environ.get("READINGS_FILE_MAX_BYTES") or 5 * 1024 * 1024),
        # Compounding and verifying need valid qualifications (DESIGN 10.6) unless a clinic turns it off.
        "REQUIRE_QUALIFICATIONS": _bool("REQUIRE_QUALIFICATIONS", True),
        # Documents: the largest upload, and where the bytes live (a folder, or an S3-compatible bucket).
        "DOCUMENT_MAX_BYTES": int(os.environ.get("DOCUMENT_MAX_BYTES") or 10 * 1024 * 1024),
        "FILE_STORE_PATH": os.environ.get("FILE_STORE_PATH") or None,
        "FILE_STORE_BUCKET": os.environ.get("FILE_STORE_BUCKET") or None,
        "FILE_STORE_ENDPOINT_URL": os.environ.get("FILE_STORE_ENDPOINT_URL") or None,
        "FILE_STORE_REGION": os.environ.get("FILE_STORE_REGION") or None,
        "FILE_STORE_PREFIX": os.environ.get("FILE_STORE_PREFIX") or "",
        # Every container scanned at the bench unless a clinic turns it off.
        "REQUIRE_SCAN_CONFIRMATION": _bool("REQUIRE_SCAN_CONFIRMATION", True),
        # `verify-only` lets a single pharmacist receive-and-release and
        # write-and-approve; anything else keeps every second-person rule.
        "SECOND_PERSON_RULES": second_person_rules(os.environ.get("SECOND_PERSON_RULES")),
        # A dead or hung database answers 503 within seconds (compounding.database).
        "DB_CONNECT_TIMEOUT": int(os.environ.get("DB_CONNECT_TIMEOUT") or 3),
        "DB_STATEMENT_TIMEOUT_MS": int(os.environ.get("DB_STATEMENT_TIMEOUT_MS") or 5000),
        # Sign-in limits per client address are counted in memory (one process) unless a
        # Redis is named, which every worker then shares.
        "RATELIMIT_ENABLED": _bool("RATELIMIT_ENABLED", True),
        "RATELIMIT_STORAGE_URI": rate_limit_storage(os.environ),
        # Work in the background (DESIGN 10.7): a Redis names the job queue every process shares;
        # without one the queue is a SQLite file in instance/ (JOBS_QUEUE_PATH).
        "REDIS_URL": (os.environ.get("REDIS_URL") or "").strip() or None,
        "JOBS_QUEUE_PATH": os.environ.get("JOBS_QUEUE_PATH") or None,
        "JOBS_IN_PROCESS": _optional_bool("JOBS_IN_PROCESS"),
        "JOBS_WORKERS": int(os.environ.get("JOBS_WORKERS") or 2),
        "JOBS_NICE": int(os.environ.get("JOBS_NICE") or 10),
        "JOBS_STALE_SECONDS": int(os.environ.get("JOBS_STALE_SECONDS") or 120),
        "JOBS_MAX_ATTEMPTS": int(os.environ.get("JOBS_MAX_ATTEMPTS") or 3),
        "EXPORT_SYNC_MAX_ROWS": int(os.environ.get("EXPORT_SYNC_MAX_ROWS") or 20000),
        "EXPORT_KEEP_HOURS": int(os.environ.get("EXPORT_KEEP_HOURS") or 24),
        "EXPORT_WORK_PATH": os.environ.get("EXPORT_WORK_PATH") or None,
        # E-mail: none without MAIL_SERVER (digests are then read on the dashboard only).
        "MAIL_SERVER": (os.environ.get("MAIL_SERVER") or "").strip() or None,
        "MAIL_PORT": int(os.environ.get("MAIL_PORT") or 587),
        "MAIL_SECURITY": mail_security(os.environ.get("MAIL_SECURITY")),
        "MAIL_USERNAME": os.environ.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD") or None,
        "MAIL_FROM": os.environ.get("MAIL_FROM") or "",
        "MAIL_CA_FILE": os.environ.get("MAIL_CA_FILE") or None,
        "MAIL_TIMEOUT": int(os.environ.get("MAIL_TIMEOUT") or 15),
        "MAIL_MAX_ATTEMPTS": int(os.environ.get("MAIL_MAX_ATTEMPTS") or 6),
        "DIGEST_HOUR": int(os.environ.get("DIGEST_HOUR") or 6),
        "DIGEST_EXPIRY_DAYS": int(os.environ.get("DIGEST_EXPIRY_DAYS") or 30),
        # Where people reach the application: the links in e-mails are made from it.
        "BASE_URL": (os.environ.get("BASE_URL") or "").strip().rstrip("/") or "http://127.0.0.1:5000",
    }


def _optional_bool(name: str) -> bool | None:
    value = os.environ.get(name)
    return None if value is None or value.strip() == "" else _bool(name, False)


def mail_security(value: str | None) -> str:
    """How the SMTP connection is protected: `starttls` (the default), `ssl` (implicit TLS, port 465) or `none`."""
    value = (value or "starttls").strip().lower()
    if value not in ("starttls", "ssl", "none"):
        raise ValueError(f"MAIL_SECURITY must be starttls, ssl or none, not {value!r}")
    return value


def rate_limit_storage(environ) -> str:
    """RATELIMIT_STORAGE_URI, else REDIS_URL, else memory (a single process only)."""
    return (environ.get("RATELIMIT_STORAGE_URI") or environ.get("REDIS_URL") or "memory://").strip()


DEFAULTS = {
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "WTF_CSRF_TIME_LIMIT": None,
    "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
    # This many wrong passwords (sign-in or signature) within the minutes below
    # make the account wait 1, 2, 4... minutes, at most LOGIN_LOCKOUT_MINUTES, between tries.
    "LOGIN_MAX_FAILURES": 5,
    "LOGIN_LOCKOUT_MINUTES": 15,
    # Per client address: every sign-in POST, and the refused ones (Flask-Limiter notation).
    "LOGIN_RATE_LIMIT": "20 per minute",
    "LOGIN_FAILURE_RATE_LIMIT": "10 per 15 minutes",
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_KEY_PREFIX": "compounding",
    "RATELIMIT_HEADERS_ENABLED": True,
    # A Redis that stops answering must not stop sign-in: count in memory meanwhile.
    "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
    "RATELIMIT_SWALLOW_ERRORS": True,
    "PASSWORD_MIN_LENGTH": 10,
    # zxcvbn's 0-4 estimate a new password must reach (3: "safely unguessable").
    "PASSWORD_MIN_SCORE": 3,
    "PASSWORD_HASH_METHOD": "scrypt",
    "SESSION_IDLE_MINUTES": 30,
    # A new API token answers for this many days unless revoked first.
    "API_TOKEN_DAYS": 90,
    "TRUSTED_PROXIES": 0,
    # Quality signals (services.signals). One quality-class event (infection, necrosis, nodule,
    # allergic reaction, abscess, granuloma) or one graded severe flags a batch or lot at once.
    # Expected reactions flag only with at least QUALITY_MIN_EVENTS events and a patient rate whose
    # 95 % Wilson lower bound is above the clinic's own patient rate; QUALITY_EVENT_RATE_THRESHOLD
    # is now the floor under that baseline (a new clinic with almost no events does not flag every
    # pair of reactions), no longer a rate of events per session.
    "QUALITY_EVENT_RATE_THRESHOLD": 0.05,
    "QUALITY_MIN_EVENTS": 2,
    "REQUIRE_SCAN_CONFIRMATION": True,
    "REQUIRE_QUALIFICATIONS": True,
    # A document (PDF, PNG, JPEG) over this many bytes is refused (413).
    "DOCUMENT_MAX_BYTES": 10 * 1024 * 1024,
    # None: instance/documents. With a bucket, documents go to S3 (or a compatible server at the endpoint).
    "FILE_STORE_PATH": None,
    "FILE_STORE_BUCKET": None,
    "FILE_STORE_ENDPOINT_URL": None,
    "FILE_STORE_REGION": None,
    "FILE_STORE_PREFIX": "",
    "SECOND_PERSON_RULES": "all",
    # Failed attempts to record for a patient before a recall may call them unreachable.
    "RECALL_MIN_ATTEMPTS": 2,
    # A form POST without its one-time key is refused when this is true; None follows
    # WTF_CSRF_ENABLED, which production never turns off (compounding.idempotency).
    "SUBMISSION_KEYS_REQUIRED": None,
    # A session dated further back than this needs a pharmacist's signature.
    "BACKDATE_HOURS": 72,
    # A data logger's CSV file over this many bytes is refused (413); a month every 5 minutes is ~400 kB.
    "READINGS_FILE_MAX_BYTES": 5 * 1024 * 1024,
    "CLINIC_NAME": "Demo Aesthetic Clinic",
    "CLINIC_TIMEZONE": "Europe/London",
    "GS1_SEPARATOR": "",
    "AUTO_MIGRATE": True,
    # PostgreSQL limits for web requests (compounding.database): seconds to connect, a server-side
    # statement timeout (0: none), seconds to wait for a pooled connection.
    "DB_CONNECT_TIMEOUT": 3,
    "DB_STATEMENT_TIMEOUT_MS": 5000,
    "DB_POOL_TIMEOUT": 5,
    # The job queue (compounding.jobs): Redis when named, else a SQLite file (None: instance/jobs.sqlite3).
    "REDIS_URL": None,
    "JOBS_QUEUE_PATH": None,
    # Whether this process runs queued jobs itself. None: `flask run` does when no Redis is named
    # (the embedded default needs no second command); a WSGI server never does (`flask worker` runs them).
    "JOBS_IN_PROCESS": None,
    # Worker threads of `flask worker` (--workers) and of the queue run inside `flask run`.
    "JOBS_WORKERS": 2,
    # The niceness of job worker threads (0-19; 0 leaves it): background work yields the CPU to requests.
    "JOBS_NICE": 10,
    # A job whose worker has written no heartbeat for this long is queued again and re-run from the
    # start; after JOBS_MAX_ATTEMPTS starts it fails with a message.
    "JOBS_STALE_SECONDS": 120,
    "JOBS_MAX_ATTEMPTS": 3,
    # An export the page would fill with more rows than this becomes a job (the API always makes one).
    "EXPORT_SYNC_MAX_ROWS": 20000,
    # A finished export's file is kept this long in the file store, then deleted (a late download: 410).
    "EXPORT_KEEP_HOURS": 24,
    # Where a worker writes a workbook before keeping it in the file store (None: a folder of this
    # account's own in the system's temporary folder); files a stopped worker left are swept at start.
    "EXPORT_WORK_PATH": None,
    "MAIL_SERVER": None,
    "MAIL_PORT": 587,
    "MAIL_SECURITY": "starttls",
    "MAIL_USERNAME": None,
    "MAIL_PASSWORD": None,
    "MAIL_FROM": "",
    # A CA bundle to trust for the SMTP server's certificate (a clinic's own CA); None: the system's.
    "MAIL_CA_FILE": None,
    "MAIL_TIMEOUT": 15,
    # A message the server refused or could not take is tried again after 5, 10, 20... minutes, up to
    # MAIL_MAX_ATTEMPTS, then shown as failed to admins (and still sent again on demand).
    "MAIL_MAX_ATTEMPTS": 6,
    # The daily digest: prepared at this hour of each site's own day; lots expiring within N days.
    "DIGEST_HOUR": 6,
    "DIGEST_EXPIRY_DAYS": 30,
    "BASE_URL": "http://127.0.0.1:5000",
}
