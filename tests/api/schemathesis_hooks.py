"""Schemathesis hooks of tests/api/test_schema_fuzz.py (loaded by the schemathesis process
through its config's `hooks`).

1. The fuzzer authenticates with a token of its own; `DELETE /api/v1/auth/tokens/{id}/` would
   revoke it if it drew that token's id, and every later request would be a 401. A case that
   would revoke the fuzzer's own token revokes the fuzzer's second token (a decoy, created for
   this) instead: same operation, same user, a token that exists. Tokens the stateful phase
   creates (`POST /auth/tokens/` → `DELETE /auth/tokens/{id}/`) are revoked as drawn.

2. ACCEPTED: the failures that are our deliberate behaviour, each matched exactly (operation,
   schemathesis failure code, status, and a piece of our answer), each with its reason; README
   "Tests and benchmarks" lists them. Any other failure of any check fails the test.
"""

import os

import schemathesis

TOKEN_REVOKE = "DELETE /api/v1/auth/tokens/{id}/"

SCHEMA_VALID_REJECTED = "ST202"  # positive_data_acceptance
CREDENTIALS = (
    "schema-valid Autotask credentials that Autotask refuses, or none when no connection holds "
    "them: a 400 with `code`; only Autotask knows which credentials are right"
)
KEY_REUSED = (
    "the fuzzer sends one Idempotency-Key with different bodies: 422 `idempotency_key_reused` "
    "is the documented answer (RELIABILITY §4)"
)
DATE_RANGE = (
    "`from` after `to`: 400 naming `from`, as the dashboard says it (an empty range is a "
    "typo); OpenAPI cannot relate two parameters"
)
FILTERS = (
    "filter values the schema cannot judge (a date from 2000 to today, a company both included "
    "and excluded, a company type the database lacks): 400 `invalid_filters`, a message per key"
)

# (operation, failure code, status, a piece of the answer's body) → why it is right.
ACCEPTED: dict[tuple[str, str, int, str], str] = {
    ("POST /api/v1/auth/token/", SCHEMA_VALID_REJECTED, 400, '"invalid_credentials"'): (
        "a schema-valid username and password that are wrong: 400 `invalid_credentials`"
    ),
    **{
        (f"{method} /api/v1/integrations/autotask/{path}", SCHEMA_VALID_REJECTED, 400, code): why
        for method, path in [
            ("POST", ""),
            ("PATCH", ""),
            ("POST", "options/"),
            ("POST", "preview/"),
        ]
        for code, why in [
            ('"unknown_user"', CREDENTIALS),
            ('"bad_secret"', CREDENTIALS),
            ('"credentials_required"', CREDENTIALS),
            ('"invalid_filters"', FILTERS),
        ]
    },
    (
        "PATCH /api/v1/integrations/autotask/",
        SCHEMA_VALID_REJECTED,
        400,
        "Send the secret with a new username.",
    ): "a new `username` without its `secret`: 400 on `secret`; OpenAPI 3.0 cannot say it",
    (
        "POST /api/v1/invoices/",
        SCHEMA_VALID_REJECTED,
        400,
        "The due date cannot be before the invoice date.",
    ): "`due_date` before `invoice_date`: 400 on `due_date`; OpenAPI cannot relate two fields",
    (
        "POST /api/v1/invoices/",
        SCHEMA_VALID_REJECTED,
        400,
        '{"due_date":["Date has wrong format.',
    ): (
        "`due_date: null` in a form body: a form cannot carry null, schemathesis sends the text "
        '"null" (JSON bodies take null)'
    ),
    ("POST /api/v1/invoices/", SCHEMA_VALID_REJECTED, 400, '"customer_not_found"'): (
        "`customer_id` of no customer of the partner: 400 `customer_not_found`, as Stripe "
        "answers a body reference to a missing object (400, not 404: the URL exists)"
    ),
    ("POST /api/v1/customers/", SCHEMA_VALID_REJECTED, 422, '"idempotency_key_reused"'): (
        KEY_REUSED
    ),
    ("POST /api/v1/invoices/", SCHEMA_VALID_REJECTED, 422, '"idempotency_key_reused"'): (
        KEY_REUSED
    ),
    ("POST /api/v1/payments/", SCHEMA_VALID_REJECTED, 422, '"idempotency_key_reused"'): (
        KEY_REUSED
    ),
    ("GET /api/v1/invoices/", SCHEMA_VALID_REJECTED, 400, "The From date is after the To"): (
        DATE_RANGE
    ),
    ("GET /api/v1/payments/", SCHEMA_VALID_REJECTED, 400, "The From date is after the To"): (
        DATE_RANGE
    ),
    ("POST /api/v1/invoices/", SCHEMA_VALID_REJECTED, 400, "Tax cannot be more than the total"): (
        "`tax` above `total` (which includes it): 400 on `tax`; OpenAPI cannot relate two fields"
    ),
    (
        "POST /api/v1/invoices/{id}/move-payments/",
        SCHEMA_VALID_REJECTED,
        400,
        '"same_invoice"',
    ): (
        "moving an invoice's payments to itself (the target is `{id}`): 400 `same_invoice`; "
        "OpenAPI cannot say that a body field differs from a path parameter"
    ),
}


def accepted(operation: str, code: str, status: int, body: str) -> tuple | None:
    """The ACCEPTED key that matches a failure, or None."""
    for key in ACCEPTED:
        op, failure_code, failure_status, piece = key
        if (op, failure_code, failure_status) == (operation, code, status) and piece in body:
            return key
    return None


@schemathesis.hook
def filter_failure(context, failure, case, response):
    body = response.content.decode("utf-8", errors="replace")
    key = accepted(case.operation.label, failure.code, response.status_code, body)
    if key is not None and os.environ.get("PAYSYNC_FUZZ_ACCEPTED_LOG"):
        with open(os.environ["PAYSYNC_FUZZ_ACCEPTED_LOG"], "a") as log:
            log.write(" ".join(map(str, key)) + "\n")  # counted in the test's output
    return key is None


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.label != TOKEN_REVOKE:
        return
    params = case.path_parameters or {}
    if str(params.get("id")) == os.environ["PAYSYNC_FUZZ_OWN_TOKEN_ID"]:
        params["id"] = int(os.environ["PAYSYNC_FUZZ_DECOY_TOKEN_ID"])
