"""Widget session tokens: signed, expiring, typed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from support.errors import Unauthorized
from support.tokens import issue_widget_token, verify_widget_token

SECRET = "test-secret-0123456789-0123456789"


def test_a_fresh_token_verifies_to_its_conversation_and_key() -> None:
    token, expires = issue_widget_token(
        SECRET, conversation_id="c1", widget_key="pk_demo", ttl=timedelta(hours=1)
    )
    claims = verify_widget_token(SECRET, token)
    assert (claims.conversation_id, claims.widget_key, claims.expires_at) == ("c1", "pk_demo", expires)


def test_an_expired_token_is_refused() -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    token, _ = issue_widget_token(
        SECRET, conversation_id="c1", widget_key="k", ttl=timedelta(hours=1), now=past
    )
    with pytest.raises(Unauthorized, match="expired"):
        verify_widget_token(SECRET, token)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token, _ = issue_widget_token(
        "other-secret-0123456789-012345678", conversation_id="c1", widget_key="k", ttl=timedelta(hours=1)
    )
    with pytest.raises(Unauthorized, match="invalid"):
        verify_widget_token(SECRET, token)


def test_a_valid_jwt_of_another_type_is_refused() -> None:
    token = jwt.encode({"sub": "c1", "exp": 4_000_000_000, "typ": "agent"}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="not a widget"):
        verify_widget_token(SECRET, token)
