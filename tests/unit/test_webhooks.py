"""The pure parts of outbound webhooks: retry delays, message ids, secrets."""

from __future__ import annotations

import base64

from support.webhooks.service import backoff_s, message_id_for, new_secret


def test_retry_delays_double_from_the_base_up_to_the_cap_with_at_most_half_taken_off() -> None:
    full = [backoff_s(n, 5.0, 60.0, rand=lambda: 1.0) for n in range(1, 7)]
    assert full == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    least = [backoff_s(n, 5.0, 60.0, rand=lambda: 0.0) for n in range(1, 7)]
    assert least == [d / 2 for d in full]
    assert backoff_s(10_000, 5.0, 3600.0, rand=lambda: 1.0) == 3600.0  # no overflow on absurd attempts


def test_a_message_id_is_stable_for_an_event_id_and_random_without_one() -> None:
    assert message_id_for("rating.created", "r:1") == message_id_for("rating.created", "r:1")
    assert message_id_for("rating.created", "r:1") != message_id_for("ticket.created", "r:1")
    assert message_id_for("rating.created", None) != message_id_for("rating.created", None)
    assert all(
        m.startswith("msg_") and len(m) <= 64 for m in (message_id_for("x", "y"), message_id_for("x", None))
    )


def test_a_secret_is_whsec_and_32_random_bytes() -> None:
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
