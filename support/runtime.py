"""The clients one process owns, created in the app's lifespan and passed to services.

Whoever creates a client closes it: :func:`open_runtime` creates them all and closes them all, in reverse
order, when its block ends. Nothing here is created at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from handoff.accounts import AgentAccounts
from handoff.agents import AgentService
from handoff.assign import Assigner, Candidate
from handoff.desk import AgentDesk
from handoff.examples import ExampleService
from handoff.labels import LabelService
from handoff.notes import NoteService
from handoff.presence import AgentPresence
from handoff.profiles import ProfileService
from handoff.queue import HandoffQueue
from handoff.records import HandoffRecords
from handoff.routing import RoutingPolicy
from handoff.saved_replies import SavedReplyService
from handoff.scrub import DEFAULT_REFERENCE_PATTERNS, ExampleScrubber, ReviewLimits
from handoff.service import HandoffService
from handoff.teams import AssignmentDefaults, TeamService
from handoff.tokens import AgentTokens
from support import log_redaction, metrics, tracing
from support.attachments.service import AttachmentRows, AttachmentService
from support.attachments.storage import open_store
from support.audit import AuditLog
from support.channels.widget_sessions import WidgetSessionService
from support.conversation.archive import archive_idle
from support.conversation.fanout import Fanout
from support.conversation.pipeline import TurnDeps, TurnRunner
from support.conversation.recovery import recover_forever
from support.conversation.store import ConversationStore
from support.db.engine import make_engine, session_factory
from support.db.migrate import upgrade_to_head
from support.embedded_redis import EmbeddedRedis
from support.errors import StartupFailed, one_line
from support.evaluation.runs import EvaluationRuns
from support.events import EventSink, NoEvents
from support.jobs import JobEngine
from support.knowledge.service import KnowledgeService
from support.llm.gateway import ModelGateway, make_client
from support.llm.offline import Example, OfflineResponder
from support.llm.policy import Policy, load_policy
from support.mail import Mailer
from support.privacy.customer_data import CustomerDataService, default_sources
from support.privacy.retention import sweep_once
from support.ratelimit import RateLimits
from support.redaction import Redactor
from support.redis_client import RedisClient, cluster_client, is_cluster, ping, single_client
from support.reports import rollup as report_rollup
from support.reports.facts import FactRefresher
from support.reports.predicted import PredictedSatisfaction
from support.reports.ratings import RatingService
from support.search import SearchIndex, SearchService
from support.settings import REDACTION_KINDS, Settings
from support.signing_key import resolve_signing_key
from support.tickets.batches import TicketBatches
from support.tickets.integration_keys import IntegrationKeys
from support.tickets.service import TicketService
from support.webhooks import WebhookService

log = logging.getLogger(__name__)

DrainHook = Callable[[], Awaitable[None]]
if TYPE_CHECKING:
    RuntimeRedis = RedisClient
else:
    # Litestar hands the Runtime to handlers through msgspec, which refuses a union of two classes in a
    # dataclass field; the checker still sees the union.
    RuntimeRedis = Any
REDIS_MAX_CONNECTIONS = 200  # per process; Redis's own default limit is 10,000 clients
REDIS_POOL_WAIT_S = 10.0  # a command waits this long for a free connection before failing
# A healthy Redis or database answers at start in milliseconds. Without a bound, a host that drops packets
# would hold the start for the driver's own timeout (asyncpg: 60 s) or, for redis-py, forever.
START_CHECK_TIMEOUT_S = 10.0
ARCHIVE_INDEX_FRACTION = 1 / 30  # of archive_idle_s: a skipped index update makes it at most that stale


@dataclass
class Runtime:
    """Everything a request handler or background task may need, owned by the lifespan."""

    settings: Settings
    signing_key: str  # signs and verifies widget and agent tokens (support.signing_key)
    redis: RuntimeRedis
    redis_url: str
    # Where pub/sub consumers (agent consoles) open their connections: the main client on one server; on a
    # cluster, a client of its seed node, which hears every node's PUBLISH (see support/redis_client.py).
    subscriber: aioredis.Redis
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    store: ConversationStore
    # The active knowledge version (policy + articles) as the prompt carries it; replaced when another
    # version is activated (``knowledge`` tells every holder, see _follow_knowledge).
    policy: Policy
    knowledge: KnowledgeService
    widget_sessions: WidgetSessionService
    ratings: RatingService
    agents: AgentService
    examples: ExampleService
    queue: HandoffQueue
    handoff: HandoffService
    presence: AgentPresence  # agents' online / away / offline, shared by processes in Redis
    teams: TeamService  # teams' business hours, and whether anybody can answer now
    agent_tokens: AgentTokens
    limits: RateLimits
    # Background work (batches, webhook deliveries, archiving, retention) as jobs over Redis.
    jobs: JobEngine
    turns: TurnRunner = field(init=False)
    fanout: Fanout = field(init=False)
    desk: AgentDesk = field(init=False)
    customers: CustomerDataService = field(init=False)
    facts: FactRefresher = field(init=False)  # keeps conversation_fact, what reports aggregate
    accounts: AgentAccounts = field(init=False)
    integration_keys: IntegrationKeys = field(init=False)  # the keys other systems file tickets with
    tickets: TicketService = field(init=False)
    batches: TicketBatches = field(init=False)
    # Predicted satisfaction of unrated conversations, through Message Batches (beside CSAT, never in it).
    predicted: PredictedSatisfaction = field(init=False)
    # Evaluation runs of knowledge versions (the console's Evaluate screen), carried out as jobs.
    evaluations: EvaluationRuns = field(init=False)
    # Who did what among admins and agents (append-only SQL); services record into it, never handlers.
    audit: AuditLog = field(init=False)
    saved_replies: SavedReplyService = field(init=False)  # the composer's library of saved replies
    attachments: AttachmentService = field(init=False)  # files in chats and tickets (support/attachments)
    # Finding things: agents' search, the index it reads, conversation labels, customer profiles.
    search: SearchService = field(init=False)
    search_index: SearchIndex = field(init=False)
    labels: LabelService = field(init=False)
    profiles: ProfileService = field(init=False)
    # Automatic assignment of queued conversations to online agents (handoff/assign.py).
    assigner: Assigner = field(init=False)
    gateway: ModelGateway | None = None  # None in offline mode: nothing may call the model API
    # Where services report events (webhooks listen here); nothing listens until one is set.
    events: EventSink = field(default_factory=NoEvents)
    # Outbound webhooks: endpoints, deliveries and their jobs (the events sink of a running system).
    webhooks: WebhookService | None = None
    # Personal data out of model-bound text; one per process (its detection cache is shared).
    redactor: Redactor = field(default_factory=Redactor)
    widget_sockets: set[Any] = field(default_factory=set)
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    drain_hooks: list[DrainHook] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def offline(self) -> bool:
        """No model API key: answers come only from policy passages and examples."""
        return self.settings.llm.offline

    def spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        """Start an owned background task: errors are logged, and it is cancelled at shutdown."""

        async def runner() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s failed", name)

        task = asyncio.create_task(runner(), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close_widget_sockets(self) -> None:
        """Drain hook: let in-flight turns finish, then close customer sockets with 1001 (going away)."""
        turns = [t for t in self.tasks if t.get_name().startswith("turn:")]
        await asyncio.gather(*turns, return_exceptions=True)
        for socket in list(self.widget_sockets):
            with contextlib.suppress(Exception):
                await socket.close(code=1001, reason="server restarting")

    async def drain(self) -> None:
        """Stop taking new work and let in-flight work finish (bounded); called once on SIGTERM."""
        if self.draining.is_set():
            return
        self.draining.set()
        log.info("draining: %d hooks, up to %.1fs", len(self.drain_hooks), self.settings.app.drain_timeout_s)
        try:
            async with asyncio.timeout(self.settings.app.drain_timeout_s):
                await asyncio.gather(*(hook() for hook in self.drain_hooks), return_exceptions=True)
        except TimeoutError:
            log.warning("drain timed out after %.1fs", self.settings.app.drain_timeout_s)


async def check_redis(url: str) -> None:
    """:class:`StartupFailed` unless the configured Redis answers a PING within START_CHECK_TIMEOUT_S.

    A process that started without its Redis would be up but unable to serve anything; refusing to start
    lets the supervisor (systemd, Kubernetes) see it and retry. Redis lost later is a different matter: the
    process stays up, /readyz says 503 and requests get ``unavailable``.
    """
    where = redis_location(url)
    options: dict[str, Any] = {
        "socket_connect_timeout": START_CHECK_TIMEOUT_S, "socket_timeout": START_CHECK_TIMEOUT_S,
        "retry": Retry(NoBackoff(), 0),
    }  # fmt: skip
    # A cluster client's first command reads the slot map, and fails unless every slot is served.
    client = cluster_client(url, **options) if is_cluster(url) else single_client(url, **options)
    try:
        async with asyncio.timeout(START_CHECK_TIMEOUT_S):
            await ping(client)
    except (RedisError, OSError, TimeoutError) as exc:
        raise StartupFailed(f"Redis at {where} is unreachable: {one_line(exc)}") from exc
    finally:
        await client.aclose()


def redis_location(url: str) -> str:
    """Where a Redis URL points, without its credentials (the message goes to a log and a terminal)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}"


async def check_database(url: str) -> None:
    """:class:`StartupFailed` unless the database answers ``SELECT 1`` within START_CHECK_TIMEOUT_S."""
    engine = make_engine(url)
    try:
        async with asyncio.timeout(START_CHECK_TIMEOUT_S), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        where = engine.url.render_as_string(hide_password=True)
        raise StartupFailed(f"database {where} is unreachable: {one_line(cause)}") from exc
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, *, run_jobs: bool | None = None) -> AsyncIterator[Runtime]:
    """Create every client of the process; close them all when the block ends.

    ``run_jobs``: run a job worker in this process (default: ``SWITCHBOARD_JOBS_IN_PROCESS``).
    """
    settings.app.data_dir.mkdir(parents=True, exist_ok=True)
    signing_key = await asyncio.to_thread(resolve_signing_key, settings.app)
    # Neither may reach a log line, whatever shape they have (see support.log_redaction).
    log_redaction.register_secret(signing_key)
    if settings.llm.api_key is not None:
        log_redaction.register_secret(settings.llm.api_key.get_secret_value())
    if settings.llm.offline:
        log.warning(
            "ANTHROPIC_API_KEY not set: OFFLINE MODE. Answers come only from policy passages and examples "
            "above the match threshold; everything else goes to human agents."
        )
    if settings.redis.url:
        await check_redis(settings.redis.url)
    # The database and the policy before an embedded Redis is started: a start that fails on them leaves
    # no redis-server behind (it would also hold the failed process's stdout and stderr open).
    if not settings.database.url:
        log.info("SWITCHBOARD_DATABASE_URL not set: using SQLite at %s", settings.database_url)
    await check_database(settings.database_url)
    if settings.database.migrate_on_start:
        try:
            await upgrade_to_head(settings.database_url)
        except Exception as exc:
            raise StartupFailed(f"database migration failed: {one_line(exc)}") from exc

    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    # The policy file seeds the first knowledge version; read it now so a bad file fails the start early.
    if await KnowledgeService.needs_seed_in(sessions):
        load_policy(settings.policy.path)
    else:
        log.info("knowledge versions exist: SWITCHBOARD_POLICY_PATH is not read (it only seeds the first)")
    embedded: EmbeddedRedis | None = None
    if settings.redis.url:
        redis_url = settings.redis.url
    else:
        embedded = EmbeddedRedis(settings.app.data_dir / "redis")
        await asyncio.to_thread(embedded.start, settings.redis.embedded_start_timeout_s)
        redis_url = embedded.url
        log.info("SWITCHBOARD_REDIS_URL not set: using the embedded Redis at %s", redis_url)
    client: RedisClient
    # A stopped or partitioned Redis fails a command as `unavailable` instead of hanging it (and a turn with
    # it). Pub/sub reads pass their own timeout; the fanout has its own client.
    timeouts = {
        "socket_timeout": settings.redis.socket_timeout_s,
        "socket_connect_timeout": settings.redis.socket_timeout_s,
    }
    if is_cluster(redis_url):
        # A cluster client keeps a pool per node (REDIS_MAX_CONNECTIONS each); redis-py has no blocking
        # variant of it, so a burst past the bound fails the command instead of waiting.
        client = cluster_client(
            redis_url, decode_responses=False, health_check_interval=30,
            max_connections=REDIS_MAX_CONNECTIONS, **timeouts,
        )  # fmt: skip
    else:
        # A blocking pool: under a burst of turns a command waits for a free connection instead of failing
        # with "Too many connections" (redis-py's default pool raises at 100 in use), which closed customer
        # sockets.
        client = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                redis_url, decode_responses=False, health_check_interval=30,
                max_connections=REDIS_MAX_CONNECTIONS, timeout=REDIS_POOL_WAIT_S, **timeouts,
            )
        )  # fmt: skip
    # The shared subscriber's own connection: no silent retries, so a broken connection is noticed and
    # every socket's feed resynchronised (see support/conversation/fanout.py). On a cluster it is the seed
    # node's: a cluster broadcasts every PUBLISH to all its nodes (see support/redis_client.py).
    # No health_check_interval: its PING would read the connection concurrently with the fanout's reader.
    pubsub_client = single_client(redis_url, decode_responses=False, retry=Retry(NoBackoff(), 0))
    subscriber = (
        single_client(redis_url, decode_responses=False, health_check_interval=30)
        if isinstance(client, RedisCluster)
        else client
    )
    audit = AuditLog(sessions)
    knowledge = KnowledgeService(sessions, client, settings.knowledge, audit=audit)
    policy = await knowledge.start(settings.policy.path)
    log.info("knowledge version %s active (%d chars)", policy.version, len(policy.text))
    # Re-index a busy conversation for the archiver at most every ARCHIVE_INDEX_FRACTION of its idle time.
    store = ConversationStore(
        client, active_mark_interval_s=min(60.0, settings.app.archive_idle_s * ARCHIVE_INDEX_FRACTION)
    )

    async def frames_after(conversation_id: str, after: int) -> list[dict[str, Any]]:
        return [event.to_frame() for event in await store.events_after(conversation_id, after)]

    fanout = Fanout(pubsub_client, replay=frames_after)
    await fanout.start()
    hs = settings.handoff
    # Examples are shown to other customers' conversations: stored scrubbed of PII, names and references.
    # PII detection applies to examples even where redaction of model calls is switched off: an example
    # goes to other customers' conversations, not back to its own customer's.
    scrubber = ExampleScrubber(
        Redactor(settings.redaction.model_copy(update={"enabled": True, "kinds": list(REDACTION_KINDS)})),
        reference_patterns={**DEFAULT_REFERENCE_PATTERNS, **hs.examples_reference_patterns},
    )
    queue = HandoffQueue(client, lease_s=hs.lease_s)
    agents = AgentService(sessions, default_capacity=hs.default_capacity)
    presence = AgentPresence(client, away_after_s=hs.away_after_s)
    sa = settings.assignment
    teams = TeamService(
        sessions, presence, configured_hours=settings.teams.business_hours, audit=audit,
        defaults=AssignmentDefaults(
            policy=sa.assignment, sla_first_reply_s=sa.sla_first_reply_s,
            sla_resolution_s=sa.sla_resolution_s, intent_teams=sa.assignment_intent_teams,
        ),
    )  # fmt: skip
    mailer = Mailer(settings.mail)
    jobs = JobEngine(redis_url, concurrency=settings.jobs.concurrency)
    # Built before the services that emit events, which are given it as their events port.
    webhooks = WebhookService(
        sessions, client, jobs, webhook_http_client(settings), settings.webhooks,
        allow_private=webhooks_allow_private(settings), audit=audit,
    )  # fmt: skip
    runtime = Runtime(
        settings=settings,
        signing_key=signing_key,
        redis=client,
        redis_url=redis_url,
        subscriber=subscriber,
        engine=engine,
        sessions=sessions,
        store=store,
        policy=policy,
        knowledge=knowledge,
        agents=agents,
        agent_tokens=AgentTokens(client, agents),
        examples=ExampleService(
            sessions,
            client,
            auto_approve=hs.examples_auto_approve,
            scrubber=scrubber,
            limits=ReviewLimits(min_reply_chars=hs.examples_min_reply_chars),
        ),
        queue=queue,
        handoff=HandoffService(
            store,
            queue,
            client,
            HandoffRecords(sessions),
            events=webhooks,
            teams=teams,
            email_replies=mailer.enabled,
        ),
        presence=presence,
        teams=teams,
        widget_sessions=WidgetSessionService(
            store,
            secret=signing_key,
            widget_keys=settings.app.widget_keys,
            identity_secrets={
                key: secret.get_secret_value() for key, secret in settings.app.widget_identity_secrets.items()
            },
        ),
        ratings=RatingService(store, sessions, events=webhooks),
        redactor=Redactor(settings.redaction),
        # On the main client's pool, which is closed below: the limiter owns no client of its own.
        limits=RateLimits.over_redis(
            client, redis_url, settings.limits, store=store, model_turns=not settings.llm.offline
        ),
        jobs=jobs,
        events=webhooks,
        webhooks=webhooks,
    )
    rescrubbed = await runtime.examples.rescrub_legacy()
    if rescrubbed:
        log.info("examples: %d stored before redaction were scrubbed and reviewed again", rescrubbed)
    # The attachment store's client (S3) is closed with the others below.
    attachment_stack = contextlib.AsyncExitStack()
    attachment_store = await attachment_stack.enter_async_context(
        open_store(settings.attachments, settings.app.data_dir)
    )
    runtime.attachments = AttachmentService(sessions, attachment_store, settings.attachments)
    anthropic_client = None if settings.llm.offline else make_client(settings.llm)
    if anthropic_client is not None:
        runtime.gateway = ModelGateway(
            anthropic_client, client, runtime.sessions, settings.llm, redactor=runtime.redactor
        )
    runtime.fanout = fanout
    runtime.turns = TurnRunner(
        TurnDeps(
            store=store,
            gateway=runtime.gateway,
            settings=settings.llm,
            policy=policy,
            offline=OfflineResponder(policy.facts),
            turn_deadline_s=settings.llm.turn_deadline_s,
            lease_s=settings.llm.turn_lease_s,
            heartbeat_s=settings.llm.turn_heartbeat_s,
            handoff=runtime.handoff,
            examples=runtime.examples,
            routing=RoutingPolicy(
                confidence_threshold=hs.confidence_threshold,
                intent_thresholds=hs.intent_thresholds,
                negative_sentiment=hs.negative_sentiment,
                max_bot_turns=hs.max_bot_turns,
                repeat_similarity=hs.repeat_similarity,
            ),
            examples_in_prompt=hs.examples_in_prompt,
            examples_min_score=hs.examples_min_score,
            email_replies=mailer.enabled,
            attachment_images=(
                runtime.attachments.image_blocks if settings.attachments.images_to_model else None
            ),
        ),
        runtime.spawn,
    )
    deps = runtime.turns.deps
    approved_examples: list[Example] = []

    def reindex_offline(approved: list[Example]) -> None:
        # Offline answers (no key, or the model down) may come from what agents wrote, too.
        approved_examples[:] = approved
        deps.offline = OfflineResponder(runtime.policy.facts, examples=approved)

    runtime.examples.on_reload(reindex_offline)
    runtime.tickets = TicketService(
        sessions=sessions, store=store, jobs=runtime.jobs, events=runtime.events, policy=policy,
        llm=settings.llm, settings=settings.tickets, gateway=runtime.gateway, routing=deps.routing,
        handoff=runtime.handoff, examples=runtime.examples, offline=lambda: deps.offline,
        examples_in_prompt=hs.examples_in_prompt, examples_min_score=hs.examples_min_score,
        mailer=mailer, attachments=runtime.attachments,
    )  # fmt: skip
    runtime.tickets.register_jobs()
    runtime.batches = TicketBatches(
        sessions=sessions, redis=client, jobs=runtime.jobs, tickets=runtime.tickets, gateway=runtime.gateway,
        llm=settings.llm, settings=settings.tickets, policy_version=policy.version,
    )  # fmt: skip
    runtime.batches.register_jobs()
    runtime.predicted = PredictedSatisfaction(
        sessions=sessions, redis=client, store=store, gateway=runtime.gateway, llm=settings.llm,
        settings=settings.predicted_csat,
    )  # fmt: skip
    runtime.desk = AgentDesk(
        store=store, handoff=runtime.handoff, queue=queue, turns=runtime.turns, examples=runtime.examples,
        agents=runtime.agents, policy_version=policy.version, tickets=runtime.tickets,
        events=webhooks, audit=audit,
    )  # fmt: skip
    runtime.accounts = AgentAccounts(agents, runtime.agent_tokens, runtime.desk, audit)
    runtime.audit = audit
    runtime.saved_replies = SavedReplyService(sessions, store, settings.saved_replies, audit)
    desk = runtime.desk

    async def auto_assigned(conversation_id: str, agent: Candidate) -> None:
        await desk.claimed(conversation_id, agent.id, agent.name, first=True, auto=True)

    runtime.assigner = Assigner(
        queue, presence, client, teams.roster, skill_wait_s=sa.assignment_skill_wait_s,
        on_assigned=auto_assigned, after_pass=runtime.handoff.queue_changed,
    )  # fmt: skip
    runtime.handoff.assignment_kick = runtime.assigner.kick

    def follow_knowledge(active: Policy) -> None:
        # Everything that answers or records from the knowledge uses the newly active version from its
        # next answer on; the conversations themselves are untouched.
        runtime.policy = deps.policy = runtime.tickets.policy = active
        runtime.batches.policy_version = runtime.desk.policy_version = active.version
        deps.offline = OfflineResponder(active.facts, examples=approved_examples)

    knowledge.on_change(follow_knowledge)
    runtime.spawn(knowledge.poll_forever(), "knowledge-poll")
    runtime.spawn(runtime.desk.expire_forever(min(1.0, hs.lease_s / 4)), "lease-sweeper")
    runtime.spawn(runtime.desk.presence_forever(presence, min(5.0, hs.away_after_s / 4)), "presence-sweeper")
    runtime.spawn(runtime.assigner.run_forever(sa.assignment_interval_s), "assigner")
    runtime.spawn(
        recover_forever(store, runtime.turns, settings.llm.turn_recovery_interval_s), "turn-recovery"
    )
    rs = settings.retention
    runtime.customers = CustomerDataService(
        store, sessions, runtime.handoff,
        [*default_sources(sessions, runtime.examples, retention_deletes_examples=rs.examples == "delete"),
         AttachmentRows(runtime.attachments)],
        audit=audit,
    )  # fmt: skip
    runtime.integration_keys = IntegrationKeys(sessions, audit=audit)
    runtime.facts = FactRefresher(store, sessions, client)
    runtime.search = SearchService(sessions)
    runtime.search_index = SearchIndex(store, sessions, client)
    runtime.labels = LabelService(store, sessions)
    runtime.profiles = ProfileService(store, sessions, runtime.labels)
    runtime.desk.notes = NoteService(sessions)
    runtime.drain_hooks.append(runtime.close_widget_sockets)
    _register_periodic_jobs(runtime)
    webhooks.register_jobs(runtime.jobs)
    runtime.evaluations = EvaluationRuns(client, sessions, jobs, knowledge, settings)
    runtime.evaluations.register_jobs(runtime.jobs)
    # Every job function is registered above this line: a worker knows only what was registered before
    # it started.
    if settings.jobs.in_process if run_jobs is None else run_jobs:
        runtime.spawn(runtime.jobs.run_worker(), "jobs-worker")
    if embedded is not None and embedded.owned:
        runtime.spawn(embedded.supervise(), "embedded-redis-supervisor")
    tracing.setup()  # only when an OpenTelemetry exporter is configured
    try:
        yield runtime
    finally:
        tracing.flush()
        metrics.process_exited()
        for task in list(runtime.tasks):
            task.cancel()
        await asyncio.gather(*runtime.tasks, return_exceptions=True)
        await runtime.jobs.aclose()
        await attachment_stack.aclose()
        await webhooks.http.aclose()
        if anthropic_client is not None:
            await anthropic_client.close()
        await fanout.aclose()
        await pubsub_client.aclose()
        await runtime.limits.aclose()
        if subscriber is not client:
            await subscriber.aclose()
        await client.aclose()
        await engine.dispose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def webhooks_allow_private(settings: Settings) -> bool:
    """Whether webhook endpoints may reach loopback or private addresses: as configured, else only in
    development (where receivers on 127.0.0.1 are the usual case)."""
    allowed = settings.webhooks.allow_private_urls
    return settings.app.environment == "development" if allowed is None else allowed


def webhook_http_client(settings: Settings) -> httpx.AsyncClient:
    """The client that sends webhook deliveries: no redirects followed (a redirect could lead past the
    address checks), no proxy or certificates taken from the environment, the attempt's timeout."""
    return httpx.AsyncClient(
        timeout=settings.webhooks.timeout_s, follow_redirects=False, trust_env=False,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )  # fmt: skip


def _register_periodic_jobs(runtime: Runtime) -> None:
    """Archiving, report facts, retention and predicted satisfaction, as periodic jobs (one worker runs each
    slot)."""
    settings = runtime.settings

    async def before_archive(conversation_ids: list[str]) -> None:
        # Last look while Redis still holds them: their final facts, and any message not yet indexed.
        await runtime.facts.refresh(conversation_ids)
        await runtime.search_index.index_conversations(conversation_ids)

    async def archive() -> None:
        count = await archive_idle(
            runtime.store, runtime.sessions,
            idle_s=settings.app.archive_idle_s, ttl_s=settings.app.archive_ttl_s,
            before_archive=before_archive,
        )  # fmt: skip
        if count:
            log.info("archived %d idle conversations", count)

    runtime.jobs.every("archive", settings.app.archive_interval_s, archive)
    runtime.jobs.every("search-index", settings.search.index_interval_s, runtime.search_index.index_changed)

    async def report_facts() -> None:
        count = await runtime.facts.refresh_changed()
        if count:
            log.info("report facts: %d conversations refreshed", count)
        # the days those writes marked, recomputed here so reports seldom have to (support/reports/rollup.py)
        days = await report_rollup.refresh(runtime.sessions)
        if days:
            log.info("report rollup: %d days recomputed", days)

    # The first pass after an upgrade looks back a day; `switchboard refresh-report-facts --all` backfills.
    runtime.jobs.every("report-facts", settings.reports.refresh_s, report_facts, timeout_s=1800)
    rs = settings.retention
    if rs.days > 0:

        async def retention() -> None:
            counts = await sweep_once(runtime.customers, rs)
            if counts["conversations"]:
                log.info("retention: erased %s", counts)

        runtime.jobs.every("retention", rs.interval_s, retention)
    if runtime.gateway is not None:  # offline: nothing may call the model API
        runtime.predicted.register_jobs(runtime.jobs)
