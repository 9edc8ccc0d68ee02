"""Schemathesis against /api/v1/openapi.json: every operation, fuzzed, answers as the document says.

The WSGI app is called in-process (no server) on the demo data, with the bearer token of a
pharmacist (who may change things) and, separately, of an auditor (read-only). Checked on
every answer: never a 5xx, a status code the document declares, the declared content type,
and a body that matches the declared schema.
"""

import time
from collections import Counter

import pytest
import schemathesis
import testkit
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from compounding import create_app
from compounding.demo import seed_demo
from compounding.extensions import db
from compounding.models import User
from compounding.services import users

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Generated examples per operation (Hypothesis' fuzzing phase); the explicit-examples and
# coverage phases add a bounded, deterministic set of boundary cases on top.
EXAMPLES = 15
SEED = 2026
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                HealthCheck.filter_too_much, HealthCheck.data_too_large])


def _api_for(username: str, *, coverage: bool = True):
    """A fresh database with the demo data, and the API schema called as `username`."""
    app = create_app(testkit.base_config())
    testkit.reset_database(app)
    with app.app_context():
        for _ in seed_demo():
            pass
        user = db.session.scalar(db.select(User).where(User.username == username))
        token = users.create_token(None, user, "schemathesis")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    schema.config.update(headers={"Authorization": f"Bearer {token}"})
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                    max_examples=EXAMPLES, deterministic=True, with_security_parameters=False)
    schema.config.seed = SEED
    # The coverage phase adds each operation's boundary cases (missing fields, wrong types, limits).
    schema.config.phases.coverage.enabled = coverage
    return app, schema


class Tally:
    """What one role's run did: cases per operation, statuses, time."""

    def __init__(self, role: str):
        self.role = role
        self.cases: Counter = Counter()
        self.statuses: Counter = Counter()
        self.first = self.last = None

    def record(self, case, response) -> None:
        self.first = self.first or time.perf_counter()
        self.last = time.perf_counter()
        self.cases[case.operation.label] += 1
        self.statuses[response.status_code] += 1

    def report(self) -> str:
        seconds = (self.last - self.first) if self.first else 0
        return (f"\nschemathesis as {self.role}: {len(self.cases)} operations, {sum(self.cases.values())} cases "
                f"in {seconds:.1f} s; statuses {dict(sorted(self.statuses.items()))}")


def _fixture(username: str, **options):
    @pytest.fixture(scope="module")
    def api():
        app, schema = _api_for(username, **options)
        schema.tally = Tally(username)
        yield schema
        print(schema.tally.report())
        with app.app_context():
            db.session.remove()
            db.engine.dispose()

    return api


pharmacist_api = _fixture("pharmacist")
# Read-only: the writes it may not make are refused before their bodies are read, so the
# boundary cases of the coverage phase (run for the pharmacist) would add nothing but time.
auditor_api = _fixture("auditor", coverage=False)
# Revoking tokens would revoke the run's own token (`{}` or `{"all": true}`), leaving every later
# case a 401: that operation is tested in test_api_tokens instead.
pharmacist_schema = schemathesis.pytest.from_fixture("pharmacist_api").exclude(operation_id="api.token_revoke")
auditor_schema = schemathesis.pytest.from_fixture("auditor_api").exclude(operation_id="api.token_revoke")


def _call(case, tally: Tally) -> None:
    response = case.call_and_validate(checks=CHECKS)
    tally.record(case, response)
    # Every case carries the role's token: a 401 would mean the run tested nothing but the gate.
    assert response.status_code != 401, response.text


@pharmacist_schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_answers_as_documented_for_a_pharmacist(case, pharmacist_api):
    _call(case, pharmacist_api.tally)


@auditor_schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_answers_as_documented_for_an_auditor(case, auditor_api):
    _call(case, auditor_api.tally)
