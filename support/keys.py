"""Every Redis key Switchboard uses, built in one place.

Keys of one conversation share the hash tag ``{conv:<id>}`` so multi-key Lua scripts and MULTI/EXEC
work unchanged on Redis Cluster or Valkey cluster. Global keys (budgets, breakers) carry their own tag.
"""

from __future__ import annotations

import hashlib

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


# --- conversation --------------------------------------------------------------------------------


def conv_events(conversation_id: str) -> str:
    """Stream of every persisted event of a conversation; entry id ``<seq>-0``, so seq order is id order."""
    return f"{PREFIX}:{conv_tag(conversation_id)}:events"


def conv_client_ids(conversation_id: str) -> str:
    """Hash ``client_id`` -> seq: makes a resent customer message idempotent."""
    return f"{PREFIX}:{conv_tag(conversation_id)}:client_ids"


def conv_state(conversation_id: str) -> str:
    """Hash of the conversation's hot state (state, assignee, last_seq, timestamps, window start...)."""
    return f"{PREFIX}:{conv_tag(conversation_id)}:state"


def conv_summary(conversation_id: str) -> str:
    """Hash of the running summary: text, upto_seq, version."""
    return f"{PREFIX}:{conv_tag(conversation_id)}:summary"


def conv_lock(conversation_id: str, name: str) -> str:
    """A short-lived lock of one conversation (e.g. ``summarize``)."""
    return f"{PREFIX}:{conv_tag(conversation_id)}:lock:{name}"


def conv_channel(conversation_id: str) -> str:
    """Pub/sub channel fanning a conversation's events out to every process holding one of its sockets."""
    return f"{PREFIX}:{conv_tag(conversation_id)}:fanout"


def conversation_keys(conversation_id: str) -> tuple[str, ...]:
    """Every durable key of a conversation (not locks, which carry their own TTL): for archiving/expiry."""
    return (
        conv_events(conversation_id),
        conv_client_ids(conversation_id),
        conv_state(conversation_id),
        conv_summary(conversation_id),
        conv_triage(conversation_id),
        conv_notes(conversation_id),
    )


# Lock names of a conversation (store.py's turn lock, window.py's summary lock): erased with it.
CONV_LOCK_NAMES = ("turn", "summary")


def conversation_all_keys(conversation_id: str) -> tuple[str, ...]:
    """Every key a conversation may have, locks included: what erasing it deletes."""
    locks = tuple(conv_lock(conversation_id, name) for name in CONV_LOCK_NAMES)
    return (*conversation_keys(conversation_id), *locks)


def conv_triage(conversation_id: str) -> str:
    """Hash: customer message seq -> its triage verdict (JSON), kept with the turn for agents and reports."""
    return f"{PREFIX}:{conv_tag(conversation_id)}:triage"


def agent_fanout(conversation_id: str) -> str:
    """Pub/sub channel of agent-side events of one conversation (customer typing, new messages)."""
    return f"{PREFIX}:{conv_tag(conversation_id)}:agent_fanout"


def active_conversations() -> str:
    """Sorted set: conversation id -> time of its last event (epoch s); what the archiver sweeps."""
    return f"{PREFIX}:{{archive}}:active"


def report_facts_watermark() -> str:
    """Hash: how far the conversation-fact refresh has read its sources: ``active``, the time (epoch s) its
    last pass began (it reads active-set scores, ratings and handoff records from then); ``ledger_id``, the
    last ledger row it saw."""
    return f"{PREFIX}:{{reports}}:facts_watermark"


def turns_owed() -> str:
    """Sorted set: conversation id -> when a customer message last made it owe a turn (ms since epoch).

    The global index the recovery sweep reads (its own hash tag); the authority is the conversation's own
    ``turn_owed_seq`` state field, written by the script that stores the message. Written before the
    message is acknowledged; an entry whose conversation owes nothing is dropped by the sweep."""
    return f"{PREFIX}:{{turns}}:owed"


# --- human handoff (one hash tag: the queue's scripts touch several of these at once) -------------


def handoff_queue() -> str:
    """Sorted set of waiting conversations; score = priority rank * 1e13 + waiting-since ms (lowest first)."""
    return f"{PREFIX}:{{handoff}}:queue"


def handoff_item(conversation_id: str) -> str:
    """Hash of one handoff: reason, priority, waiting_since, assignee, triage digest, preview."""
    return f"{PREFIX}:{{handoff}}:item:{conversation_id}"


def handoff_leases() -> str:
    """Sorted set: claimed conversation id -> lease expiry (ms since epoch, Redis TIME)."""
    return f"{PREFIX}:{{handoff}}:leases"


def handoff_held(agent_id: str) -> str:
    """Set of conversation ids an agent holds (its load, checked against its capacity)."""
    return f"{PREFIX}:{{handoff}}:held:{agent_id}"


def handoff_presence() -> str:
    """Sorted set: agent id -> last time one of its console connections was seen (ms)."""
    return f"{PREFIX}:{{handoff}}:presence"


def agent_presence() -> str:
    """Hash: agent id -> the presence it chose (``online``, ``away``, ``offline``), or ``auto_away`` when the
    agent was online and every console of theirs stayed closed past the grace period."""
    return f"{PREFIX}:{{handoff}}:presence_state"


def assignment_round_robin() -> str:
    """Hash: team id -> the agent automatic assignment gave the team's last conversation (round robin)."""
    return f"{PREFIX}:{{handoff}}:round_robin"


def handoff_events() -> str:
    """Pub/sub channel of queue changes and assignments, for every agent console."""
    return f"{PREFIX}:{{handoff}}:events"


def conv_notes(conversation_id: str) -> str:
    """List of internal agent notes of a conversation (JSON), never sent to the customer."""
    return f"{PREFIX}:{conv_tag(conversation_id)}:notes"


def examples_version() -> str:
    """Counter bumped whenever examples change, so every process reloads its retrieval index."""
    return f"{PREFIX}:{{examples}}:version"


# --- customer data (export, erasure, retention) ---------------------------------------------------


def customer_digest(kind: str, value: str) -> str:
    """A fixed-length stand-in for a visitor id or e-mail in key names: key names show up in monitoring
    and ``SCAN`` output, and an e-mail address has no business there (nor braces, which would move the
    hash tag). ``kind`` is ``visitor`` or ``email``; e-mails are matched case-insensitively."""
    normal = value.strip().lower() if kind == "email" else value
    return hashlib.sha256(f"{kind}\0{normal}".encode()).hexdigest()[:32]


def customer_conversations(kind: str, value: str) -> str:
    """Set of the conversation ids of one visitor id or e-mail (its own hash tag: one slot per customer)."""
    return f"{PREFIX}:{{cust:{customer_digest(kind, value)}}}:conversations"


def erased_conversations() -> str:
    """Sorted set: conversation id -> time it was erased (epoch s). The archiver checks it after writing
    SQL, so a conversation it read just before an erasure is not resurrected; pruned after a day."""
    return f"{PREFIX}:{{erasure}}:tombstones"


def agent_token_generation(agent_id: str) -> str:
    """The agent's current token generation (cached from SQL, with a TTL): tokens of another are revoked."""
    return f"{PREFIX}:{{agents}}:generation:{agent_id}"


def agent_revocations() -> str:
    """Pub/sub channel: an agent's tokens were revoked; every process closes that agent's sockets."""
    return f"{PREFIX}:{{agents}}:revoked"


# --- ticket batches -------------------------------------------------------------------------------


def ticket_batch_apply(batch_id: str) -> str:
    """Lease of the worker applying one Message Batch's results (so two pollers do not both walk it)."""
    return f"{PREFIX}:{{tickets}}:batch_apply:{batch_id}"


# --- predicted satisfaction ----------------------------------------------------------------------


def prediction_batch_apply(batch_id: str) -> str:
    """Lease of the worker applying one prediction batch's results (so two pollers do not both walk it)."""
    return f"{PREFIX}:{{predictions}}:batch_apply:{batch_id}"


# --- abuse limits (counted by the ``limits`` package) --------------------------------------------

# The ``limits`` package names its own keys: ``<prefix>:{<namespace>/<identifiers>/<amount>/<multiples>/
# <granularity>}`` and the same with ``/-1`` appended (the sliding window's current and previous counter).
# It wraps everything after the prefix in braces itself, so those two keys (the only ones its script
# touches) share one hash tag, and every limit of every subject hashes to its own slot. So the prefix
# and the identifiers must carry NO braces: a brace in the prefix would become the tag of every limit
# (one hot slot); one in an identifier would cut the tag short.
RATE_LIMIT_PREFIX = f"{PREFIX}:rl"


def rate_limit_subject(limit: str, subject: str) -> str:
    """The identifier one limit counts under: e.g. ``model_turns_per_ip`` of ``203.0.113.7``."""
    identifier = f"{limit}:{subject}"
    if "{" in identifier or "}" in identifier:
        raise ValueError("rate-limit identifiers must not contain braces (see RATE_LIMIT_PREFIX)")
    return identifier


# --- webhooks ------------------------------------------------------------------------------------


def webhook_endpoints_version() -> str:
    """Counter bumped whenever a webhook endpoint is created or deactivated: every process reloads its
    cached list of active endpoints when it sees a new value (support/webhooks/service.py)."""
    return f"{PREFIX}:{{webhooks}}:endpoints_version"


# --- knowledge -----------------------------------------------------------------------------------


def knowledge_active() -> str:
    """The id of the active knowledge version: every process polls it and switches when it moves
    (support/knowledge/service.py). SQL keeps the same fact (the version activated last)."""
    return f"{PREFIX}:{{knowledge}}:active"


# --- evaluation runs (the console's Evaluate screen) ----------------------------------------------
# One hash tag for all of them: the run lock and a run's record are written by one Lua script.


def evaluation_run(run_id: str) -> str:
    """Hash of one evaluation run: what it evaluates, its progress and its result (support/evaluation/
    runs.py); expires ``SWITCHBOARD_EVAL_KEEP_S`` after it was started."""
    return f"{PREFIX}:{{evaluations}}:run:{run_id}"


def evaluation_running() -> str:
    """The id of the evaluation run under way (one at a time per workspace); it expires when the run's
    worker stops renewing it (a worker that died frees the next run)."""
    return f"{PREFIX}:{{evaluations}}:running"


def evaluation_recent() -> str:
    """List of the latest evaluation run ids, newest first (capped)."""
    return f"{PREFIX}:{{evaluations}}:recent"


# --- search (support/search.py) -----------------------------------------------------------------------


def search_index_watermark() -> str:
    """String: the time (epoch s) the last search-index pass began; the next one reads the active set's
    scores from a little before it."""
    return f"{PREFIX}:{{search}}:watermark"
