import json
import logging

from config.logging import SecretMaskingFilter, build_logging_config, mask_secrets, register_secret


def test_registered_secret_is_masked_in_plain_and_encoded_forms():
    secret = "CANARY-6f1c0b7e-secret/with+chars"
    register_secret(secret)
    import base64
    from urllib.parse import quote

    text = f"a {secret} b {quote(secret, safe='')} c {base64.b64encode(secret.encode()).decode()}"
    masked = mask_secrets(text)
    assert "CANARY-6f1c0b7e" not in masked
    assert masked.count("[REDACTED]") == 3


def test_masking_with_thousands_of_registered_secrets():
    """A sync worker registers every partner's secrets (issue 19: thousands). Each is still
    masked wherever it appears; where two start at the same place the longer wins; text that
    holds none comes back as it was."""
    import base64
    import random
    import string

    rng = random.Random(19)
    alphabet = string.ascii_letters + string.digits + "+/=-_"
    others = ["".join(rng.choices(alphabet, k=rng.randint(8, 40))) for _ in range(5000)]
    for value in others:
        register_secret(value)
    short, longer = "FLEET-4a7c-key", "FLEET-4a7c-key-and-more"
    register_secret(short)
    register_secret(longer)
    picked = rng.sample(others, 20)
    text = (
        " | ".join(picked)
        + f" {longer} {short}{short}. {base64.b64encode(short.encode()).decode()}"
    )
    masked = mask_secrets(text)
    for value in [*picked, short, longer]:
        assert value not in masked
    assert "-and-more" not in masked  # the longer value, not the shorter plus a leaked tail
    assert masked.count("[REDACTED]") == len(picked) + 4
    assert masked.endswith("[REDACTED][REDACTED]. [REDACTED]")
    plain = "sync run 12 finished: succeeded (3 requests, 0 created)"
    assert mask_secrets(plain) == plain


def test_secret_looking_values_are_masked():
    text = (
        "Secret: abcdef123 password=hunter22 token='tok123' "
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw gAAAAABn0123456789abcdefghijklmnop"
    )
    masked = mask_secrets(text)
    for leaked in ["abcdef123", "hunter22", "tok123", "MfKQ9r8G", "gAAAAABn0123"]:
        assert leaked not in masked


def test_filter_masks_args_and_exception_text():
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "login with secret=%s", ("s3cr3t-value",), None
    )
    try:
        raise ValueError("password=inner-secret")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    SecretMaskingFilter().filter(record)
    assert "s3cr3t-value" not in record.getMessage()
    assert "inner-secret" not in record.exc_text


def test_json_format_carries_request_id(capsys):
    import logging.config

    from config.logging import request_id_var

    logging.config.dictConfig(build_logging_config(level="INFO", fmt="json"))
    token = request_id_var.set("req-42")
    try:
        logging.getLogger("paysync.test").info("hello password=xyz")
    finally:
        request_id_var.reset(token)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    data = json.loads(line)
    assert data["request_id"] == "req-42"
    assert data["message"] == "hello password=[REDACTED]"
    assert data["level"] == "INFO"
