"""The visitor-id rule of widget sessions, as a pure function (no Redis, no HTTP), and the identity
secrets' setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from support.channels.widget_sessions import merged_visitor
from support.errors import IdentityInvalid
from support.settings import AppSettings


def test_an_anonymous_conversation_takes_the_first_id_it_is_given() -> None:
    assert merged_visitor({}, {"id": "u-1", "name": "Ada"}) == {"id": "u-1", "name": "Ada"}


def test_the_same_id_may_update_name_and_email_and_become_verified() -> None:
    current = {"id": "u-1", "name": "Ada"}
    assert merged_visitor(current, {"id": "u-1", "email": "ada@example.com", "verified": True}) == {
        "id": "u-1", "name": "Ada", "email": "ada@example.com", "verified": True,
    }  # fmt: skip


def test_a_renewal_without_an_id_keeps_the_id_and_its_verification() -> None:
    current = {"id": "u-1", "verified": True}
    assert merged_visitor(current, {"name": "Ada"}) == {"id": "u-1", "verified": True, "name": "Ada"}


def test_nothing_new_changes_nothing() -> None:
    assert merged_visitor({"id": "u-1", "name": "Ada"}, {"id": "u-1"}) is None


@pytest.mark.parametrize("current", [{"id": "u-1"}, {"id": "u-1", "verified": True}])
def test_another_id_is_refused_whether_or_not_the_first_was_verified(current: dict[str, object]) -> None:
    with pytest.raises(IdentityInvalid):
        merged_visitor(current, {"id": "u-2", "verified": True})


def test_identity_secrets_are_read_from_the_environment_as_a_json_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWITCHBOARD_WIDGET_IDENTITY_SECRETS", '{"pk_live": "0123456789abcdef0123"}')
    secrets = AppSettings().widget_identity_secrets
    assert {k: v.get_secret_value() for k, v in secrets.items()} == {"pk_live": "0123456789abcdef0123"}
    assert "0123456789abcdef0123" not in repr(secrets)


def test_a_short_identity_secret_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_WIDGET_IDENTITY_SECRETS", '{"pk_live": "short"}')
    with pytest.raises(ValidationError, match="pk_live"):
        AppSettings()
