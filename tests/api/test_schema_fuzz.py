"""API fuzzing (TL-2, issue 9): schemathesis generates requests from our OpenAPI schema and
sends them in-process to the WSGI app as a signed-in partner user (the Autotask sandbox stands
in for Autotask). No 500s; every status code, content type and body matches the schema.
Bounded: MAX_EXAMPLES per operation, derandomized so a failure reproduces."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.django_db
MAX_EXAMPLES = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def wsgi_app(db):
    from django.core.signals import request_finished, request_started
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    # As Django's test client does: keep the test's database connection (and transaction)
    # open across the in-process requests.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_every_api_operation_conforms(wsgi_app, user_a, autotask_sandbox):
    token = Token.objects.create(user=user_a).key
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", wsgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    cases = 0

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case):
            nonlocal cases
            cases += 1
            case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)

        run()
    print(f"schemathesis: {len(operations)} operations, {cases} cases")
