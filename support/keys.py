"""Every Redis key Switchboard uses, built in one place.

Keys of one conversation share the hash tag ``{conv:<id>}`` so multi-key Lua scripts and MULTI/EXEC
work unchanged on Redis Cluster or Valkey cluster. Global keys (budgets, breakers) carry their own tag.
"""

from __future__ import annotations

PREFIX = "sb"


def conv_tag(conversation_id: str) -> str:
    """The hash tag shared by every key of one conversation."""
    return f"{{conv:{conversation_id}}}"


# --- model API gateway ---------------------------------------------------------------------------


def budget(model_scope: str, resource: str) -> str:
    """Sliding-window counter of one budgeted resource (requests, input_tokens, output_tokens)."""
    return f"{PREFIX}:{{budget}}:{model_scope}:{resource}"


def breaker(model: str) -> str:
    """Circuit-breaker state of one model, shared by all processes."""
    return f"{PREFIX}:{{breaker}}:{model}"


def budget_log(scope: str) -> str:
    """Sorted set of the budget reservations of the last minute (member id, score = ms since epoch)."""
    return budget(scope, "log")


def budget_amounts(scope: str) -> str:
    """Hash: reservation id -> "requests:input_tokens:output_tokens" held by it."""
    return budget(scope, "amounts")


def budget_totals(scope: str) -> str:
    """Hash: resource -> sum over the reservations still in the window (kept in step with the log)."""
    return budget(scope, "totals")
