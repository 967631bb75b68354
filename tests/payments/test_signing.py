"""WH-1: the Standard Webhooks known-answer vector, by our verifier and by the reference
package; and the signing helpers."""

from datetime import datetime

import pytest
import time_machine
from standardwebhooks.webhooks import Webhook

from payments import webhooks

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TS = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(signature=SIGNATURE, ts=TS, msg_id=MSG_ID):
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_known_answer_vector_signature_is_reproduced_exactly():
    assert webhooks.signature_header(SECRET, MSG_ID, TS, BODY) == SIGNATURE


def test_known_answer_vector_verifies_at_its_own_time():
    key = webhooks.secret_key(SECRET)
    result = webhooks.verify(headers=headers(), body=BODY, keys=[key], now=TS)
    assert (result.event_id, result.timestamp) == (MSG_ID, TS)


def test_known_answer_vector_with_last_character_changed_is_rejected():
    key = webhooks.secret_key(SECRET)
    wrong = SIGNATURE[:-2] + "A="  # ...1OA=
    assert wrong.endswith("1OA=")
    with pytest.raises(webhooks.VerificationError) as exc:
        webhooks.verify(headers=headers(wrong), body=BODY, keys=[key], now=TS)
    assert exc.value.reason == "bad_signature"


def test_reference_package_agrees_on_the_vector():
    with time_machine.travel(TS, tick=False):
        wh = Webhook(SECRET)
        assert wh.sign(MSG_ID, datetime.fromtimestamp(TS), BODY.decode()) == SIGNATURE
        assert wh.verify(BODY, headers()) == {"test": 2432232314}


def test_secret_without_prefix_gives_the_same_key():
    assert webhooks.secret_key(SECRET) == webhooks.secret_key(SECRET.removeprefix("whsec_"))


def test_generated_secrets_are_32_random_bytes_with_prefix():
    a, b = webhooks.generate_secret(), webhooks.generate_secret()
    assert a != b and a.startswith("whsec_")
    assert len(webhooks.secret_key(a)) == 32


@pytest.mark.parametrize("offset,ok", [(-301, False), (-299, True), (299, True), (301, False)])
def test_tolerance_is_checked_in_both_directions(offset, ok):
    key = webhooks.secret_key(SECRET)
    call = lambda: webhooks.verify(headers=headers(), body=BODY, keys=[key], now=TS + offset)  # noqa: E731
    if ok:
        assert call().event_id == MSG_ID
    else:
        with pytest.raises(webhooks.VerificationError, match="timestamp_out_of_tolerance"):
            call()
