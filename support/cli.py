"""``switchboard`` command line: serve | demo | migrate | worker | create-agent | create-integration-key |
revoke-integration-key | generate-secret-key | export-customer | erase-customer | bench | fake-anthropic."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from support.settings import load_settings

log = logging.getLogger(__name__)


def _configure_logging(level: str) -> None:
    from support import log_redaction

    log_redaction.install()  # every record of every logger (uvicorn's too) is redacted when created
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic (1.17+) logs the set-up of each of its plugins at INFO on every migration run: seven lines
    # above the start-up message that tell an operator nothing.
    logging.getLogger("alembic.runtime.plugins").setLevel(max(logging.WARNING, logging.getLogger().level))
    # The job engine logs each job it queues and runs at INFO; its failures are ERROR and stay.
    logging.getLogger("saq").setLevel(max(logging.WARNING, logging.getLogger().level))


def _cannot_start(reason: str) -> int:
    """One line on stderr saying why the process did not start; the exit code a supervisor sees."""
    print(f"switchboard serve: cannot start: {reason}", file=sys.stderr, flush=True)
    return EXIT_CANNOT_START


EXIT_CANNOT_START = 1


def settings_failure(exc: Exception) -> str:
    """A settings error as one line naming the environment variables at fault (pydantic's own message
    spans several lines and may repeat the offending value, which can be a secret)."""
    from pydantic import ValidationError

    from support import settings as settings_module
    from support.errors import one_line

    if not isinstance(exc, ValidationError):
        return one_line(exc)
    model = getattr(settings_module, exc.title, None)
    prefix = str(getattr(model, "model_config", {}).get("env_prefix", ""))
    problems = [
        f"{(prefix + str(error['loc'][0])).upper() if error['loc'] else exc.title}: {error['msg']}"
        for error in exc.errors()
    ]
    return "invalid settings: " + "; ".join(problems)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run HTTP + WebSocket until SIGTERM, then drain. Exits with EXIT_CANNOT_START and one line on stderr
    when it cannot start: bad settings, the address cannot be bound, Redis or the database unreachable, a
    failed migration."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from support.errors import SwitchboardError, one_line
    from support.server import bind_listener

    try:
        settings = load_settings()
    except (ValidationError, SettingsError, SwitchboardError) as exc:
        return _cannot_start(settings_failure(exc))
    try:  # before importing the app (seconds): a taken port is reported at once
        listener = bind_listener(args.host, args.port)
    except SwitchboardError as exc:
        return _cannot_start(exc.message)
    try:
        _configure_logging(settings.app.log_level)
    except ValueError as exc:  # an unknown level name
        listener.close()
        return _cannot_start(f"invalid settings: SWITCHBOARD_LOG_LEVEL: {exc}")
    from support.app import create_app
    from support.server import serve

    # Benchmarks only: profile the whole serve (until the SIGTERM drain ends) and dump pstats there.
    profile_out = os.environ.get("SWITCHBOARD_PROFILE_OUT")
    profiler = cProfile.Profile() if profile_out else None
    if profiler is not None:
        # uvicorn re-raises the SIGTERM it captured once it has shut down; exit normally instead so the
        # stats below get written.
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
        profiler.enable()
    try:
        serve(
            create_app(settings, own_runtime=False),
            host=args.host,
            port=args.port,
            log_level=settings.app.log_level,
            drain_timeout_s=settings.app.drain_timeout_s,
            settings=settings,
            listener=listener,
            on_listening=lambda host, port: _print_next_steps(
                settings,
                host,
                port,
                getattr(args, "demo_account", None),
                getattr(args, "accounts_exist", False),
            ),
        )
    except SwitchboardError as exc:  # StartupFailed, a ConfigurationError, no redis-server binary...
        return _cannot_start(exc.message)
    except OSError as exc:  # a file start-up needs: the policy, the data directory, the signing key
        return _cannot_start(one_line(exc))
    except KeyboardInterrupt:  # Ctrl-C: uvicorn re-raises it once the drain and shutdown are done
        print("switchboard: stopped", flush=True)
    finally:
        if profiler is not None and profile_out:
            profiler.disable()
            profiler.dump_stats(profile_out)
    return 0


def _program() -> str:
    """How the user ran this command (``.venv/bin/switchboard`` from a checkout, else ``switchboard``), so
    the commands printed for them can be pasted as they are."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) != "switchboard":
        return "switchboard"
    relative = os.path.relpath(argv0)
    return relative if not relative.startswith("..") and os.sep in relative else "switchboard"


def _print_next_steps(
    settings: Any, host: str, port: int, demo_account: str | None = None, accounts_exist: bool = False
) -> None:
    from support.welcome import CREATE_AGENT_COMMAND, model_mode, next_steps, public_base_url

    command = CREATE_AGENT_COMMAND.replace("switchboard", _program(), 1)
    print(
        next_steps(
            public_base_url(host, port),
            model_mode(settings),
            command,
            demo_account=demo_account,
            accounts_exist=accounts_exist,
        ),
        flush=True,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """The service and the demo model in one process: the fake model API in demo mode on a loopback port,
    ``ANTHROPIC_BASE_URL`` pointing at it, then ``serve`` on the embedded defaults. Ctrl-C (or SIGTERM)
    drains the service, then stops the model. Creates a demo admin account when there is no account."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from support.errors import SwitchboardError, one_line

    try:
        policy_text = load_settings().policy.path.read_text(encoding="utf-8")
    except (ValidationError, SettingsError, SwitchboardError) as exc:
        return _cannot_start(settings_failure(exc))
    except OSError as exc:  # the policy file
        return _cannot_start(one_line(exc))
    fake = demo_fake(policy_text, host="127.0.0.1", port=args.model_port)
    fake.start()
    os.environ.update(
        {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": "demo-model", "SWITCHBOARD_DEMO": "true"}
    )
    # The demo page on the port asked for may embed the demo key, unless widget keys were configured.
    port = args.port
    os.environ.setdefault(
        "SWITCHBOARD_WIDGET_KEYS",
        json.dumps({"pk_demo": [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]}),
    )
    print(f"demo model (fake Anthropic API, demo mode) on {fake.url}", flush=True)
    try:
        if not args.no_agent:
            password = _create_demo_agent()
            # The start-up lines then say to sign in, not to create an account.
            args.demo_account = DEMO_AGENT_EMAIL if password is not None else None
            args.accounts_exist = password is None
        return cmd_serve(args)
    finally:
        fake.stop()


DEMO_AGENT_EMAIL = "demo-agent@example.com"
DEMO_AGENT_NAME = "Sam"


def _create_demo_agent() -> str | None:
    """A demo admin account with a random password, printed once, when the database has no account;
    its password (None when accounts exist)."""
    import secrets

    from handoff.agents import AgentService
    from support.db.engine import make_engine, session_factory
    from support.db.migrate import upgrade_to_head

    settings = load_settings()
    settings.app.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> str | None:
        await upgrade_to_head(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            service = AgentService(
                session_factory(engine), default_capacity=settings.handoff.default_capacity
            )
            if await service.everyone():
                return None
            password = secrets.token_urlsafe(12)
            await service.create(
                email=DEMO_AGENT_EMAIL, password=password, name=DEMO_AGENT_NAME, role="admin", capacity=None
            )
            return password
        finally:
            await engine.dispose()

    password = asyncio.run(run())
    if password is None:
        print("agent accounts exist: sign in to the console with one of them", flush=True)
    else:
        print(
            f"created the demo admin account {DEMO_AGENT_EMAIL} ({DEMO_AGENT_NAME}), password: {password}\n"
            "  (printed once; `switchboard create-agent` makes more accounts)",
            flush=True,
        )
    return password


def demo_fake(policy_text: str, *, host: str, port: int) -> Any:
    """The fake model API answering as the demo model, paced like the real one: the answer model's first
    token after 0.4 s and ~60 tokens/s; triage (a short tool call on the small model) faster."""
    from support.testing.demo_model import DemoModel
    from support.testing.fake_anthropic import FakeAnthropic

    settings = load_settings()
    fake = FakeAnthropic(host=host, port=port, default_ttft_s=DEMO_TTFT_S, default_tps=DEMO_TPS)
    fake.set_latency(ttft_s=DEMO_TRIAGE_TTFT_S, tps=DEMO_TRIAGE_TPS, model=settings.llm.triage_model)
    fake.add_rule(DemoModel(policy_text).reply)
    return fake


DEMO_TTFT_S = 0.4
DEMO_TPS = 60.0
DEMO_TRIAGE_TTFT_S = 0.25
DEMO_TRIAGE_TPS = 300.0


def cmd_migrate(_args: argparse.Namespace) -> int:
    """Bring the SQL database to the latest schema."""
    from support.db.migrate import upgrade_to_head

    settings = load_settings()
    _configure_logging(settings.app.log_level)
    settings.app.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(upgrade_to_head(settings.database_url))
    print(f"database at head: {settings.database_url}")
    return 0


def cmd_create_agent(args: argparse.Namespace) -> int:
    """Create an agent or admin account in the configured database (migrating it first)."""
    from handoff.agents import AgentService
    from support.audit import AuditLog
    from support.db.engine import make_engine, session_factory
    from support.db.migrate import upgrade_to_head
    from support.errors import SwitchboardError

    settings = load_settings()
    settings.app.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> int:
        await upgrade_to_head(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            sessions = session_factory(engine)
            service = AgentService(sessions, default_capacity=settings.handoff.default_capacity)
            agent = await service.create(
                email=args.email, password=args.password, name=args.name, role=args.role,
                capacity=args.capacity,
            )  # fmt: skip
            # No actor: whoever has the server's configuration (recorded as the system).
            await AuditLog(sessions).record(None, "account.created", "agent", agent.id, {"role": agent.role})
        except SwitchboardError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
        finally:
            await engine.dispose()
        print(f"created {agent.role} {agent.email} ({agent.name}) id={agent.id} capacity={agent.capacity}")
        return 0

    return asyncio.run(run())


def _integration_keys(args: argparse.Namespace, revoke: bool) -> int:
    """Create or revoke an integration key in the configured database (migrating it first)."""
    from support.audit import AuditLog
    from support.db.engine import make_engine, session_factory
    from support.db.migrate import upgrade_to_head
    from support.errors import SwitchboardError
    from support.tickets.integration_keys import IntegrationKeys

    settings = load_settings()
    settings.app.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> int:
        await upgrade_to_head(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            sessions = session_factory(engine)
            service = IntegrationKeys(sessions, audit=AuditLog(sessions))
            if revoke:
                key = await service.revoke(args.id)
                print(f"revoked integration key {key.id} ({key.name}, {key.prefix}…)")
                return 0
            key, plaintext = await service.create(args.name, args.scopes)
        except SwitchboardError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
        finally:
            await engine.dispose()
        print(
            f"created integration key {key.id} ({key.name}) scopes={','.join(key.scopes)}\n"
            "  the key is shown once, on the next line; only its hash is stored",
            flush=True,
        )
        print(plaintext, flush=True)  # alone on the last line, for scripts (docs/tickets.md)
        return 0

    return asyncio.run(run())


def cmd_create_integration_key(args: argparse.Namespace) -> int:
    """Create an integration key; prints the key alone on the last line of standard output."""
    return _integration_keys(args, revoke=False)


def cmd_revoke_integration_key(args: argparse.Namespace) -> int:
    """Revoke an integration key at once (idempotent)."""
    return _integration_keys(args, revoke=True)


def _customer_data(args: argparse.Namespace, erase: bool) -> int:
    """Export or erase one customer's data through the same service as the admin API (no HTTP)."""
    from support.errors import SwitchboardError
    from support.privacy.customer_data import CustomerRef
    from support.runtime import open_runtime

    settings = load_settings()
    _configure_logging("WARNING")  # standard output carries the result
    try:
        customer = CustomerRef.parse(args.visitor_id, args.email)
    except SwitchboardError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2

    async def run() -> dict[str, Any]:
        async with open_runtime(settings) as runtime:
            if erase:
                return dict(await runtime.customers.erase(customer))
            return await runtime.customers.export(customer)

    result = asyncio.run(run())
    text = json.dumps(result, indent=None if erase else 2, ensure_ascii=False)
    if erase or not args.out:
        print(text)
        return 0
    # Created 0600 from the start: it is one person's data.
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + "\n")
    print(f"exported {len(result['conversations'])} conversations to {args.out}")
    return 0


def cmd_export_customer(args: argparse.Namespace) -> int:
    """Write everything held about one customer as JSON."""
    return _customer_data(args, erase=False)


def cmd_erase_customer(args: argparse.Namespace) -> int:
    """Erase everything held about one customer; prints the counts as JSON."""
    return _customer_data(args, erase=True)


def cmd_refresh_report_facts(args: argparse.Namespace) -> int:
    """Recompute the report facts: of conversations changed since the last pass, or with ``--all`` of every
    conversation (archived, ticket or live in Redis: a backfill)."""
    from support.runtime import open_runtime

    settings = load_settings()
    _configure_logging("WARNING")  # standard output carries the progress
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        print(f"{done}/{total} conversations", flush=True)

    async def run() -> int:
        async with open_runtime(settings, run_jobs=False) as runtime:
            if args.all:
                return await runtime.facts.refresh_all(progress)
            return await runtime.facts.refresh_changed(progress=progress)

    written = asyncio.run(run())
    print(f"refreshed {written} conversation facts in {time.monotonic() - started:.1f} s")
    return 0


def read_knowledge_dir(directory: Path, policy_name: str) -> list[tuple[str, str, str]]:
    """``(name, kind, text)`` of every ``*.md`` file in ``directory`` (sorted by name; the file named
    ``policy_name``, without ``.md``, is the policy, every other one an article named by its file name),
    then of every ``*.md`` file in its ``guidance/`` folder: guidance rules named by their file names."""
    files = sorted(p for p in directory.glob("*.md") if p.is_file())
    rules = sorted(p for p in (directory / "guidance").glob("*.md") if p.is_file())
    return [
        (p.stem, "policy" if p.stem == policy_name else "article", p.read_text(encoding="utf-8"))
        for p in files
    ] + [(p.stem, "guidance", p.read_text(encoding="utf-8")) for p in rules]


def cmd_knowledge(args: argparse.Namespace) -> int:
    """Knowledge versions: import a folder of Markdown files as one version, list, activate."""
    from support.errors import SwitchboardError
    from support.knowledge.service import DocumentIn
    from support.runtime import open_runtime

    settings = load_settings()
    _configure_logging("WARNING")  # standard output carries the progress and the result

    found: list[tuple[str, str, str]] = []
    directory = Path(getattr(args, "dir", "") or ".")
    if args.knowledge_command == "import":
        if not directory.is_dir():
            print(f"error: {directory} is not a directory", file=sys.stderr)
            return 2
        try:
            found = read_knowledge_dir(directory, args.policy)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if not found:
            print(f"error: no *.md files in {directory}", file=sys.stderr)
            return 2
        print(f"read {len(found)} documents from {directory}", flush=True)

    async def run() -> int:
        async with open_runtime(settings, run_jobs=False) as runtime:
            knowledge = runtime.knowledge
            if args.knowledge_command == "list":
                for v in await knowledge.versions(args.limit):
                    marks = ("active " if v.active else "") + ("head " if v.head else "")
                    print(f"{v.id}  {v.saved_at:%Y-%m-%d %H:%M}  {v.documents:4d} docs {v.chars:8d} chars  "
                          f"{marks}{v.change}")  # fmt: skip
                return 0
            if args.knowledge_command == "activate":
                view = await knowledge.activate(args.version, by="cli")
                print(f"activated knowledge version {view.id}")
                return 0

            def progress(done: int, total: int, name: str) -> None:
                print(f"[{done}/{total}] {name}", flush=True)

            saved = await knowledge.import_documents(
                [DocumentIn(name=name, kind=kind, text=text) for name, kind, text in found],
                created_by="cli", replace=args.replace, progress=progress,
                change=f"imported {len(found)} documents from {directory.name}",
            )  # fmt: skip
            state = "created" if saved.created else "already existed as"
            print(f"{state} knowledge version {saved.version.id} ({saved.version.documents} documents, "
                  f"{saved.version.chars} chars)", flush=True)  # fmt: skip
            if args.activate:
                await knowledge.activate(saved.version.id, by="cli")
                print(f"activated knowledge version {saved.version.id}", flush=True)
            return 0

    try:
        return asyncio.run(run())
    except SwitchboardError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


def cmd_generate_secret_key(args: argparse.Namespace) -> int:
    """Create the signing key file once (mode 0600); an existing key is kept. Never prints the key."""
    from pathlib import Path

    from support.signing_key import load_or_create_key

    path = Path(args.file)
    existed = path.exists()
    load_or_create_key(path)
    print(f"signing key {'kept' if existed else 'generated'} in {path}")
    return 0


def cmd_worker(_args: argparse.Namespace) -> int:
    """Run the background jobs (batches, webhook deliveries, archiving, retention) without serving HTTP,
    until SIGTERM. Any number of workers may run: each job runs on one of them."""
    from support.runtime import open_runtime

    settings = load_settings()
    _configure_logging(settings.app.log_level)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with open_runtime(settings, run_jobs=True) as runtime:
            log.info("worker: running jobs %s", ", ".join(runtime.jobs.functions))
            await stop.wait()

    asyncio.run(run())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark suite (needs the source checkout: the ``benchmarks`` package is not installed)."""
    try:
        from benchmarks import suite
    except ImportError:
        print(
            "error: `switchboard bench` runs from a source checkout (the benchmarks/ package); "
            "run it from the repository root",
            file=sys.stderr,
        )
        return 2
    code: int = suite.main(args)
    return code


def cmd_eval(args: argparse.Namespace) -> int:
    """Run an evaluation case file; 0 when every --fail-under threshold holds, 1 when one does not, 2 for
    bad arguments or an unreadable case file."""
    from support.errors import SwitchboardError
    from support.evaluation.report import parse_threshold
    from support.evaluation.service import EvalOptions, evaluate

    if args.eval_command == "export":
        return cmd_eval_export(args)
    if args.cases is None or args.out is None:
        print("error: switchboard eval needs --cases FILE and --out DIR", file=sys.stderr)
        return 2
    settings = load_settings()
    _configure_logging("WARNING")  # standard error carries the progress
    try:
        thresholds = [parse_threshold(t) for t in args.fail_under or []]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = EvalOptions(
        cases=args.cases, out=args.out, knowledge_version=args.knowledge_version, policy=args.policy,
        batch=args.batch, compare=args.compare, fail_under=thresholds,
    )  # fmt: skip
    try:
        outcome = asyncio.run(evaluate(settings, options))
    except SwitchboardError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for problem in getattr(exc, "problems", [])[1:]:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    summary = outcome.report["summary"]
    print(json.dumps(summary))
    print(f"report written to {args.out / 'report.json'} and {args.out / 'report.md'}", file=sys.stderr)
    for miss in outcome.misses:
        print(f"below threshold: {miss}", file=sys.stderr)
    return outcome.exit_code


def _date(text: str) -> datetime:
    """A --from / --to value: an ISO date or date-time (UTC when it names no offset)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date (2026-11-30 or 2026-11-30T12:00)"
        ) from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def cmd_eval_export(args: argparse.Namespace) -> int:
    """Write archived conversations as evaluation cases (scrubbed); progress on standard error."""
    from sqlalchemy.exc import SQLAlchemyError

    from support.db.engine import make_engine, session_factory
    from support.evaluation.export import export_cases
    from support.evaluation.service import ExportScrubber

    settings = load_settings()
    _configure_logging("WARNING")
    if args.limit is not None and args.limit < 1:
        print("error: --limit must be at least 1", file=sys.stderr)
        return 2
    scrubber = ExportScrubber(settings)  # the scrubbing stored examples get

    async def run() -> dict[str, object]:
        engine = make_engine(settings.database_url)
        try:
            stats = await export_cases(
                session_factory(engine), scrubber, args.out, since=args.since, until=args.until,
                limit=args.limit, progress=lambda line: print(line, file=sys.stderr),
            )  # fmt: skip
        finally:
            await engine.dispose()
        return stats.to_json()

    try:
        counts = asyncio.run(run())
    except (SQLAlchemyError, OSError) as exc:  # no such database, not migrated, unwritable --out
        print(f"error: cannot export: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(json.dumps(counts))
    return 0


def cmd_fake_anthropic(args: argparse.Namespace) -> int:
    """Run the fake model API in the foreground (demos, benchmarks, manual testing)."""
    from support.testing.fake_anthropic import FakeAnthropic

    if args.demo:
        policy = args.policy or load_settings().policy.path
        fake = demo_fake(policy.read_text(encoding="utf-8"), host=args.host, port=args.port)
        if args.ttft is not None or args.tps is not None:
            fake.set_latency(ttft_s=args.ttft, tps=args.tps)
    else:
        fake = FakeAnthropic(
            host=args.host, port=args.port, default_ttft_s=args.ttft or 0.0, default_tps=args.tps or 0.0
        )
    fake.start()
    mode = " in demo mode" if args.demo else ""
    print(f"fake Anthropic API{mode} on {fake.url} (set ANTHROPIC_BASE_URL={fake.url})", flush=True)
    stop = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        fake.stop()
    return 0


def _checkout_on_path() -> None:
    """Make ``benchmarks`` importable when run from the repository root (the console script's sys.path
    starts at its own directory, not the working directory)."""
    cwd = os.getcwd()
    if os.path.isfile(os.path.join(cwd, "benchmarks", "suite.py")) and cwd not in sys.path:
        sys.path.insert(0, cwd)


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    _checkout_on_path()
    try:
        from benchmarks.suite import add_arguments
    except ImportError:  # not in a checkout: cmd_bench says so
        return
    add_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser(
        "demo", help="run the service with the built-in demo model (no API key needed; Ctrl-C stops it)"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--model-port", type=int, default=0, help="the demo model's port (0: any free one)")
    demo.add_argument("--no-agent", action="store_true", help="do not create a demo admin account")
    demo.set_defaults(func=cmd_demo)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    worker = sub.add_parser(
        "worker",
        help="run the background jobs (batches, webhooks, archiving, retention) without serving HTTP",
    )
    worker.set_defaults(func=cmd_worker)

    create = sub.add_parser("create-agent", help="create an agent or admin account")
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=["agent", "admin"], default="agent")
    create.add_argument("--capacity", type=int, default=None, help="conversations held at once")
    create.set_defaults(func=cmd_create_agent)

    key = sub.add_parser(
        "create-integration-key",
        help="create a key another system files tickets with (printed once, alone on the last line)",
    )
    key.add_argument("--name", required=True, help="what the key is for, e.g. the contact form")
    key.add_argument(
        "--scopes", nargs="+", default=None, metavar="SCOPE",
        help="tickets:write and/or tickets:read (default: both)",
    )  # fmt: skip
    key.set_defaults(func=cmd_create_integration_key)
    revoke = sub.add_parser("revoke-integration-key", help="revoke an integration key at once")
    revoke.add_argument("id", help="the key's id (as `create-integration-key` printed it)")
    revoke.set_defaults(func=cmd_revoke_integration_key)

    export = sub.add_parser("export-customer", help="export everything held about one customer (JSON)")
    erase = sub.add_parser("erase-customer", help="erase everything held about one customer")
    for command, func in ((export, cmd_export_customer), (erase, cmd_erase_customer)):
        who = command.add_mutually_exclusive_group(required=True)
        who.add_argument("--visitor-id", help="the widget visitor id")
        who.add_argument("--email", help="the customer's e-mail address")
        command.set_defaults(func=func)
    export.add_argument("--out", help="write to this file (mode 0600) instead of standard output")
    facts = sub.add_parser(
        "refresh-report-facts",
        help="recompute the per-conversation report facts (those changed since the last pass, or --all)",
    )
    facts.add_argument(
        "--all", action="store_true", help="every conversation: archived, tickets and live (a backfill)"
    )
    facts.set_defaults(func=cmd_refresh_report_facts)

    knowledge = sub.add_parser("knowledge", help="knowledge versions: import a folder, list, activate")
    ksub = knowledge.add_subparsers(dest="knowledge_command", required=True)
    kimport = ksub.add_parser("import", help="import a folder of Markdown files as one new version")
    kimport.add_argument(
        "dir", help="a folder of *.md files: one document each, named by its file name (guidance/*.md: rules)"
    )
    kimport.add_argument("--policy", default="policy", help="the file name (without .md) of the policy")
    kimport.add_argument("--replace", action="store_true", help="the version holds exactly these files")
    kimport.add_argument("--activate", action="store_true", help="activate the new version at once")
    klist = ksub.add_parser("list", help="knowledge versions, the last saved first")
    klist.add_argument("--limit", type=int, default=20)
    kactivate = ksub.add_parser("activate", help="activate a version (an older one: a rollback)")
    kactivate.add_argument("version")
    knowledge.set_defaults(func=cmd_knowledge)
    ev = sub.add_parser(
        "eval", help="run evaluation cases through the turn pipeline, judge them, write a report"
    )
    ev.add_argument("--cases", type=Path, default=None, help="the case file (JSONL, docs/evaluation.md)")
    which = ev.add_mutually_exclusive_group()
    which.add_argument("--knowledge-version", default=None, metavar="ID", help="a stored knowledge version")
    which.add_argument("--policy", type=Path, default=None, metavar="FILE", help="a policy file instead")
    ev.add_argument("--out", type=Path, default=None, help="where report.json and report.md go")
    ev.add_argument("--batch", action="store_true", help="answer and judge calls through Message Batches")
    ev.add_argument("--compare", default=None, metavar="ID", help="a second knowledge version to run too")
    ev.add_argument(
        "--fail-under", nargs="+", default=None, metavar="METRIC=VALUE",
        help="exit 1 when a metric is below its value (handoff_precision, handoff_recall, judge_pass_rate)",
    )  # fmt: skip
    ev.set_defaults(func=cmd_eval, eval_command=None)
    evsub = ev.add_subparsers(dest="eval_command")
    export = evsub.add_parser("export", help="turn archived conversations into evaluation cases (scrubbed)")
    export.add_argument("--out", type=Path, required=True, help="the case file; cases it holds are kept")
    export.add_argument("--from", dest="since", type=_date, default=None, metavar="DATE",
                        help="conversations started at or after this date (UTC)")  # fmt: skip
    export.add_argument("--to", dest="until", type=_date, default=None, metavar="DATE",
                        help="conversations started before this date (UTC)")  # fmt: skip
    export.add_argument("--limit", type=int, default=None, metavar="N", help="at most N new cases")

    keygen = sub.add_parser(
        "generate-secret-key", help="write a random token signing key to a file once (for SECRET_KEY_FILE)"
    )
    keygen.add_argument("--file", required=True, help="where the key goes; an existing key is kept")
    keygen.set_defaults(func=cmd_generate_secret_key)

    bench = sub.add_parser("bench", help="run the benchmarks (from a source checkout; docs/benchmarks.md)")
    _add_bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)

    fake = sub.add_parser("fake-anthropic", help="run the fake Anthropic API (for demos and benchmarks)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8090)
    fake.add_argument(
        "--ttft", type=float, default=None, help="time to first token, seconds (default 0; demo: 0.4)"
    )
    fake.add_argument(
        "--tps", type=float, default=None, help="output tokens per second (0: unpaced; demo: 60)"
    )
    fake.add_argument(
        "--demo", action="store_true",
        help="answer as the demo model: triage and answers from the support policy (docs/operations.md)",
    )  # fmt: skip
    fake.add_argument(
        "--policy", type=Path, default=None,
        help="the policy the demo model reads (default: the configured one)",
    )  # fmt: skip
    fake.set_defaults(func=cmd_fake_anthropic)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``switchboard`` console script."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
