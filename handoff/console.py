"""Agent and admin HTTP + the agent WebSocket: thin handlers over :class:`~handoff.desk.AgentDesk`.

Every handler except login is behind a guard (:mod:`handoff.auth`): 401 without a valid agent token,
403 for an agent on an admin route. The WebSocket carries the token as ``?token=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from litestar import Controller, Request, WebSocket, get, patch, post, put, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from handoff.agents import AgentIdentity, account_json, identity
from handoff.auth import admin_guard, agent_guard, agent_of, issue_agent_token
from handoff.examples import example_json
from handoff.team_admin import TeamIn
from support import keys, metrics
from support.channels.socket_failures import end_socket
from support.errors import (
    InternalError,
    ServiceUnavailable,
    SwitchboardError,
    Unauthorized,
    ValidationFailed,
)
from support.openapi_errors import ADMIN_SECURITY, AGENT_SECURITY, errors
from support.runtime import Runtime

log = logging.getLogger(__name__)

QUEUE_SNAPSHOT_DEBOUNCE_S = 0.1


@dataclass
class LoginIn:
    """``POST /api/v1/agent/login``."""

    email: str
    password: str


@dataclass
class MessageIn:
    """An agent message; ``draft_id`` says it is the agent's edit of that bot draft."""

    text: str
    draft_id: str | None = None
    attachments: list[str] | None = None  # ids uploaded to this conversation (docs/protocol.md)


@dataclass
class NoteIn:
    """An internal note."""

    text: str


@dataclass
class TransferIn:
    """Whom to transfer to."""

    agent_id: str


@dataclass
class AgentIn:
    """An account an admin creates."""

    email: str
    password: str
    name: str
    role: str = "agent"
    capacity: int | None = None


@dataclass
class AgentPatch:
    """An admin's change to an account: any of these; the rest stay as they are."""

    active: bool | None = None
    role: str | None = None
    name: str | None = None
    capacity: int | None = None


@dataclass
class PresenceIn:
    """``PUT /api/v1/agent/presence``."""

    status: str


@dataclass
class HoursIn:
    """``PUT /api/v1/admin/teams/{id}/hours``: the hours (docs/configuration.md); null: the setting's."""

    business_hours: dict[str, Any] | None


@dataclass
class ExamplePatch:
    """An admin's change to an example."""

    agent_text: str | None = None
    customer_message: str | None = None
    status: str | None = None
    curated: bool | None = None


def _agent(request: Request[Any, Any, Any]) -> AgentIdentity:
    return agent_of(request)


class AgentLoginController(Controller):
    """``POST /api/v1/agent/login`` (the only agent route without a guard)."""

    path = "/api/v1/agent"
    tags = ["agent"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(
        "/login", status_code=HTTP_200_OK, summary="Log in; returns a bearer token",
        responses=errors(401, 429, 503, s401="Wrong email or password (the same answer for both)"),
    )  # fmt: skip
    async def login(self, data: LoginIn, request: Request[Any, Any, Any], runtime: Runtime) -> dict[str, Any]:
        """401 for a wrong email or password (the same answer for both); 429 after too many attempts."""
        async with runtime.limits.login_attempt(data.email, runtime.limits.client(request)):
            agent = identity(await runtime.agents.authenticate(data.email, data.password))
        token, expires = issue_agent_token(
            runtime.signing_key, agent,
            ttl=timedelta(seconds=runtime.settings.handoff.token_ttl_s),
        )  # fmt: skip
        return {"token": token, "expires_at": expires.isoformat(), "agent": agent.to_json()}


class AgentController(Controller):
    """``/api/v1/agent``: the queue and the conversations agents work."""

    path = "/api/v1/agent"
    tags = ["agent"]  # noqa: RUF012
    guards = [agent_guard]  # noqa: RUF012
    security = AGENT_SECURITY

    @get("/me", summary="Who am I", responses=errors(503))
    async def me(self, request: Request[Any, Any, Any], runtime: Runtime) -> dict[str, Any]:
        """The caller's account."""
        agent = await runtime.agents.get(_agent(request).id)
        presence = await runtime.presence.of(agent.id)
        return {**identity(agent).to_json(), "capacity": agent.capacity, **presence}

    @put(
        "/presence", status_code=HTTP_200_OK, summary="Set my presence: online, away or offline",
        responses=errors(400, 503),
    )  # fmt: skip
    async def set_presence(
        self, data: PresenceIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """Only ``online`` agents count as someone who can answer; waiting customers are told at once."""
        await runtime.presence.set(_agent(request).id, data.status)
        await runtime.desk.presence_changed()
        return await runtime.presence.of(_agent(request).id)

    @get("/agents", summary="Agents, their presence and load", responses=errors(503))
    async def agents(self, runtime: Runtime) -> list[dict[str, Any]]:
        """Active agents with their load, whether their console is open, and their presence."""
        everyone = await runtime.agents.all()
        load = await runtime.queue.load([a.id for a in everyone])
        online = await runtime.queue.online(within_s=runtime.settings.handoff.lease_s)
        _now, presence = await runtime.presence.effective()
        offline = {"presence": "offline", "auto": False}
        return [
            {"id": a.id, "name": a.name, "role": a.role, "online": a.id in online, "load": load[a.id],
             "capacity": a.capacity, **presence.get(a.id, offline)}
            for a in everyone
        ]  # fmt: skip

    @get("/queue", summary="Waiting conversations, in serving order", responses=errors(503))
    async def queue(self, runtime: Runtime) -> list[dict[str, Any]]:
        """Priority by urgency, first come first served within a priority."""
        return await runtime.desk.queue_items()

    @get("/conversations", summary="Conversations I hold", responses=errors(503))
    async def mine(self, request: Request[Any, Any, Any], runtime: Runtime) -> list[dict[str, Any]]:
        """The caller's conversations."""
        return await runtime.desk.mine(_agent(request))

    @get("/conversations/{conversation_id:str}", summary="The handoff packet", responses=errors(404, 503))
    async def packet(self, conversation_id: str, runtime: Runtime) -> dict[str, Any]:
        """Reason, triage, summary, transcript, draft, customer, notes, suggested replies."""
        return await runtime.desk.packet(conversation_id)

    @post(
        "/conversations/{conversation_id:str}/claim", status_code=HTTP_200_OK, summary="Claim",
        responses=errors(404, 409, 503),
    )  # fmt: skip
    async def claim(
        self, conversation_id: str, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """409 when someone else holds it, it is not waiting, or the caller is at capacity."""
        return await runtime.desk.claim(conversation_id, _agent(request))

    @post(
        "/conversations/{conversation_id:str}/messages", status_code=HTTP_201_CREATED, summary="Reply",
        responses=errors(404, 409, 503),
    )  # fmt: skip
    async def send(
        self, conversation_id: str, data: MessageIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """Send to the customer; stored as an example."""
        attached = await runtime.attachments.for_message(
            conversation_id, data.attachments or [], uploader="agent"
        )
        event = await runtime.desk.send(conversation_id, _agent(request), data.text, data.draft_id, attached)
        return {"seq": event.seq, "id": event.id}

    @post(
        "/conversations/{conversation_id:str}/typing", status_code=HTTP_204_NO_CONTENT,
        responses=errors(404, 409, 503),
    )  # fmt: skip
    async def typing(self, conversation_id: str, request: Request[Any, Any, Any], runtime: Runtime) -> None:
        """The customer sees the agent typing."""
        await runtime.desk.typing(conversation_id, _agent(request))

    @post(
        "/conversations/{conversation_id:str}/notes", status_code=HTTP_201_CREATED, summary="Note",
        responses=errors(404, 503),
    )  # fmt: skip
    async def note(
        self, conversation_id: str, data: NoteIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """An internal note, never sent to the customer."""
        return await runtime.desk.note(conversation_id, _agent(request), data.text)

    @post(
        "/conversations/{conversation_id:str}/release", status_code=HTTP_200_OK,
        responses=errors(404, 409, 503),
    )  # fmt: skip
    async def release(
        self, conversation_id: str, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, str]:
        """Back to the queue at its original place."""
        await runtime.desk.release(conversation_id, _agent(request))
        return {"state": "queued"}

    @post(
        "/conversations/{conversation_id:str}/resolve", status_code=HTTP_200_OK,
        responses=errors(404, 409, 503),
    )  # fmt: skip
    async def resolve(
        self, conversation_id: str, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, str]:
        """Resolved: the customer is asked for a rating."""
        await runtime.desk.resolve(conversation_id, _agent(request))
        return {"state": "resolved"}

    @post(
        "/conversations/{conversation_id:str}/return-to-bot", status_code=HTTP_200_OK,
        responses=errors(404, 409, 503),
    )  # fmt: skip
    async def return_to_bot(
        self, conversation_id: str, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, str]:
        """The bot answers the next customer message."""
        await runtime.desk.return_to_bot(conversation_id, _agent(request))
        return {"state": "bot"}

    @post(
        "/conversations/{conversation_id:str}/transfer", status_code=HTTP_200_OK,
        responses=errors(404, 409, 503),
    )  # fmt: skip
    async def transfer(
        self, conversation_id: str, data: TransferIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, str]:
        """To another agent with room."""
        await runtime.desk.transfer(conversation_id, _agent(request), data.agent_id)
        return {"state": "agent", "assignee": data.agent_id}

    @websocket("/ws")
    async def socket(self, socket: WebSocket[Any, Any, Any], runtime: Runtime) -> None:
        """Live queue, assignments, and the events of held or watched conversations."""
        await AgentSocket(socket, runtime, agent_of(socket)).serve()


class AdminController(Controller):
    """``/api/v1/admin``: examples and accounts (admins only)."""

    path = "/api/v1/admin"
    tags = ["admin"]  # noqa: RUF012
    guards = [admin_guard]  # noqa: RUF012
    security = ADMIN_SECURITY

    @get("/examples", summary="Examples from agent replies", responses=errors(503))
    async def examples(
        self,
        runtime: Runtime,
        status: str | None = None,
        intent: str | None = None,
        curated: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, filtered by status, intent and curation; texts as stored (scrubbed)."""
        found = await runtime.examples.find(status=status, intent=intent, curated=curated)
        return [example_json(ex) for ex in found]

    @patch(
        "/examples/{example_id:str}", summary="Approve, edit, retire or curate an example",
        responses=errors(404, 503),
    )  # fmt: skip
    async def update_example(self, example_id: str, data: ExamplePatch, runtime: Runtime) -> dict[str, Any]:
        """``curated`` promotes an approved example into the cached block of every answer prompt."""
        if all(v is None for v in (data.agent_text, data.customer_message, data.status, data.curated)):
            raise ValidationFailed("nothing to change: give agent_text, customer_message, status or curated")
        example = await runtime.examples.update(
            example_id, agent_text=data.agent_text, customer_message=data.customer_message,
            status=data.status, curated=data.curated,
        )  # fmt: skip
        return example_json(example)

    @get(
        "/examples/edit-rates", summary="How often agents change the bot's drafts, per intent",
        responses=errors(503),
    )  # fmt: skip
    async def edit_rates(self, runtime: Runtime) -> list[dict[str, Any]]:
        """A low edit rate says the bot is trusted for that intent."""
        return [rate.to_json() for rate in await runtime.examples.edit_rates()]

    @post(
        "/agents", status_code=HTTP_201_CREATED, summary="Create an agent account",
        responses=errors(409, 503, s409="An account with this email exists (`conflict`)"),
    )  # fmt: skip
    async def create_agent(
        self, data: AgentIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """409 if the email exists."""
        agent = await runtime.accounts.create(
            email=data.email,
            password=data.password,
            name=data.name,
            role=data.role,
            capacity=data.capacity,
            by=_agent(request).id,
        )
        return {**identity(agent).to_json(), "capacity": agent.capacity}

    @get("/teams", summary="Teams and their business hours", responses=errors(503))
    async def teams(self, runtime: Runtime) -> list[dict[str, Any]]:
        """Each team's hours in force, where they come from (``admin`` or ``setting``), and open now."""
        return await runtime.teams.teams()

    @post(
        "/teams", status_code=HTTP_201_CREATED, summary="Create a team",
        responses=errors(400, 409, 503, s409="A team with this id exists (`conflict`)"),
    )  # fmt: skip
    async def create_team(
        self, data: TeamIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """No members yet; hours, policy and SLA from the settings until set (handoff/team_admin.py)."""
        return await runtime.teams.create(data.id, data.name, admin_id=_agent(request).id)

    @put(
        "/teams/{team_id:str}/hours", status_code=HTTP_200_OK, summary="Set a team's business hours",
        responses=errors(400, 404, 503, s400="The hours cannot be read (`invalid_request`, says why)"),
    )  # fmt: skip
    async def set_hours(
        self, team_id: str, data: HoursIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """Persisted; ``null`` goes back to ``SWITCHBOARD_BUSINESS_HOURS``. Waiting customers are told."""
        team = await runtime.teams.set_hours(team_id, data.business_hours, admin_id=_agent(request).id)
        await runtime.desk.presence_changed()
        return team

    @get("/agents", summary="Every agent account, inactive ones too", responses=errors(503))
    async def list_agents(self, runtime: Runtime) -> list[dict[str, Any]]:
        """Active first, then by name; never the password hash."""
        return [account_json(agent) for agent in await runtime.agents.everyone()]

    @patch(
        "/agents/{agent_id:str}", summary="Deactivate, reactivate, or change role, name or capacity",
        responses=errors(404, 409, 503, s409="No active admin would be left (`conflict`)"),
    )  # fmt: skip
    async def update_agent(
        self, agent_id: str, data: AgentPatch, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """Deactivating or changing the role revokes the agent's tokens at once (401 on its next request,
        its console socket closed with 1008); a deactivated agent's conversations go back to the queue.
        409 when no active admin would be left."""
        agent = await runtime.accounts.update(
            agent_id,
            active=data.active,
            role=data.role,
            name=data.name,
            capacity=data.capacity,
            by=_agent(request).id,
        )
        return account_json(agent)


class AgentSocket:
    """One agent console connection: forwards queue changes and conversation events; keeps leases."""

    def __init__(self, socket: WebSocket[Any, Any, Any], runtime: Runtime, agent: AgentIdentity) -> None:
        self.socket = socket
        self.runtime = runtime
        self.agent = agent
        self.pubsub = runtime.subscriber.pubsub()
        self.send_lock = asyncio.Lock()
        self.held: set[str] = set()
        self.watched: set[str] = set()
        self.channels: dict[str, tuple[str, str]] = {}  # channel -> (conversation id, "customer" | "agent")
        self.snapshot_pending = False

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.socket.send_text(json.dumps(frame, separators=(",", ":")))

    async def serve(self) -> None:
        """Set up, then run the reader, pump and lease tasks until one ends; a failure of any of them (Redis
        down, a bug) ends the socket through the mapping the customer socket uses too (logged, an ``error``
        frame, close 1011)."""
        await self.socket.accept()
        tasks: list[asyncio.Task[None]] = []
        open_sockets = metrics.WEBSOCKETS_OPEN.labels(kind="agent")
        open_sockets.inc()
        try:
            if not await self._start():
                return
            self.runtime.widget_sockets.add(self.socket)  # closed with 1001 on drain, like customer sockets
            tasks = [
                asyncio.create_task(self._read()),
                asyncio.create_task(self._pump()),
                asyncio.create_task(self._keep_leases()),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                failure = task.exception()
                if failure is not None:
                    raise failure
        except Exception as exc:
            await end_socket(self.socket, exc, name=f"agent socket {self.agent.id}", send=self.send)
        finally:
            open_sockets.dec()
            self.runtime.widget_sockets.discard(self.socket)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def _start(self) -> bool:
        """Subscribe, follow held conversations, renew the lease and send the queue; False when the token
        was revoked meanwhile (the socket is closed)."""
        await self.pubsub.subscribe(keys.handoff_events(), keys.agent_revocations())
        # A revocation published between the guard's check and this subscription would be missed.
        if not await self.runtime.agent_tokens.is_current(self.agent):
            await self._close_revoked()
            return False
        queue = self.runtime.queue
        for cid in await queue.held(self.agent.id):
            await self._follow(cid, held=True)
        await queue.renew(self.agent.id)
        if await self.runtime.presence.connected(self.agent.id):
            await self.runtime.desk.presence_changed()
        await self._send_queue()
        return True

    async def _send_queue(self) -> None:
        self.snapshot_pending = False
        await self.send({"type": "queue", "items": await self.runtime.desk.queue_items()})

    async def _snapshot_soon(self) -> None:
        if self.snapshot_pending:
            return
        self.snapshot_pending = True
        await asyncio.sleep(QUEUE_SNAPSHOT_DEBOUNCE_S)
        with contextlib.suppress(WebSocketDisconnect):  # the console left meanwhile
            await self._send_queue()

    async def _follow(self, conversation_id: str, *, held: bool = False) -> None:
        (self.held if held else self.watched).add(conversation_id)
        customer, agent_side = keys.conv_channel(conversation_id), keys.agent_fanout(conversation_id)
        if customer not in self.channels:
            self.channels[customer] = (conversation_id, "customer")
            self.channels[agent_side] = (conversation_id, "agent")
            await self.pubsub.subscribe(customer, agent_side)

    async def _unfollow(self, conversation_id: str, *, held: bool = False) -> None:
        (self.held if held else self.watched).discard(conversation_id)
        if conversation_id in self.held or conversation_id in self.watched:
            return
        customer, agent_side = keys.conv_channel(conversation_id), keys.agent_fanout(conversation_id)
        if self.channels.pop(customer, None) is not None:
            self.channels.pop(agent_side, None)
            await self.pubsub.unsubscribe(customer, agent_side)

    async def _read(self) -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                raw = await self.socket.receive_text()
                try:
                    await self._handle(raw)
                except SwitchboardError as exc:
                    if isinstance(exc, ServiceUnavailable | InternalError):  # not the agent's doing
                        raise
                    await self.send({"type": "error", "code": exc.code, "message": exc.message})

    async def _handle(self, raw: str) -> None:
        try:
            frame = json.loads(raw)
        except ValueError as exc:
            raise ValidationFailed("frame is not JSON") from exc
        if not isinstance(frame, dict):
            raise ValidationFailed("frame must be an object")
        kind, cid = frame.get("type"), frame.get("conversation_id")
        if kind == "presence":
            status = frame.get("status")
            if not isinstance(status, str):
                raise ValidationFailed("`status` must be one of online, away, offline")
            await self.runtime.presence.set(self.agent.id, status)
            await self.runtime.desk.presence_changed()
            return
        if kind not in ("watch", "unwatch", "typing"):
            raise ValidationFailed(f"unknown frame type {kind!r}")
        if not isinstance(cid, str) or not cid:
            raise ValidationFailed("`conversation_id` must be a string")
        if kind == "watch":
            await self._follow(cid)
        elif kind == "unwatch":
            await self._unfollow(cid)
        else:
            await self.runtime.desk.typing(cid, self.agent)

    async def _pump(self) -> None:
        while True:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            channel = (
                message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            )
            payload = json.loads(message["data"])
            if channel == keys.handoff_events():
                await self._on_handoff_event(payload)
                continue
            if channel == keys.agent_revocations():
                if (
                    payload.get("agent_id") == self.agent.id
                    and payload.get("generation") != self.agent.generation
                ):
                    await self._close_revoked()
                    return
                continue
            followed = self.channels.get(channel)
            if followed is None:
                continue
            cid, side = followed
            frame = _for_agent(cid, side, payload)
            if frame is not None:
                await self.send(frame)

    async def _on_handoff_event(self, payload: dict[str, Any]) -> None:
        kind, cid = payload.get("type"), payload.get("conversation_id", "")
        if kind == "queue_changed":
            self.runtime.spawn(self._snapshot_soon(), f"agent-queue:{self.agent.id}")
            return
        if kind == "assigned" and payload.get("agent", {}).get("id") == self.agent.id:
            await self._follow(cid, held=True)
        elif kind == "unassigned" and payload.get("agent_id") == self.agent.id:
            await self._unfollow(cid, held=True)
        await self.send(payload)

    async def _keep_leases(self) -> None:
        interval = max(0.2, self.runtime.settings.handoff.lease_s / 3)
        while True:
            await asyncio.sleep(interval)
            # Pub/sub delivers at most once: a lost revocation still closes the socket within an interval.
            if not await self.runtime.agent_tokens.is_current(self.agent):
                await self._close_revoked()
                return
            await self.runtime.queue.renew(self.agent.id)

    async def _close_revoked(self) -> None:
        """The account was deactivated or its role changed: this token is no good any more."""
        with contextlib.suppress(Exception):  # the console may have gone already
            await self.socket.close(code=Unauthorized.ws_close_code, reason="token revoked")


def _for_agent(conversation_id: str, side: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """What an agent console gets of a conversation's pub/sub traffic (None: nothing)."""
    kind = payload.get("type")
    if side == "customer":
        if kind in ("message", "status") and "seq" in payload:
            return {"type": "event", "conversation_id": conversation_id, "event": payload}
        return None  # deltas, the agent's own typing echo, rating prompts
    if kind == "typing":
        return {"type": "typing", "conversation_id": conversation_id, "role": payload.get("role", "customer")}
    if kind in ("note", "draft"):
        return payload
    return None  # customer_message duplicates the persisted message event
