"""Where a newcomer goes next: the lines printed once the server listens and the landing page at ``/``.

Pure: text from the base URL and the model mode, no I/O (the server prints it, a route renders it)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from support.settings import Settings

ModelMode = Literal["demo", "offline", "live"]

CREATE_AGENT_COMMAND = (
    "switchboard create-agent --email you@example.com --password 'a-long-password' --name Alex --role admin"
)

ACCOUNT_TEXT = (
    "The console and the reports need an agent account. Create the first one on the machine that runs "
    "the service:"
)
DEMO_ACCOUNT_TEXT = (
    "`switchboard demo` printed a demo admin account when it started: sign in with it, or create another "
    "one on the machine that runs the service:"
)

MODE_TEXT: dict[ModelMode, tuple[str, str]] = {
    "demo": (
        "demo model",
        "Answers come from the built-in demo model (no API key, nothing leaves this machine): it answers "
        "questions the support policy covers and hands everything else to a person.",
    ),
    "offline": (
        "offline",
        "No ANTHROPIC_API_KEY is set: answers are policy passages that match the question closely, "
        "everything else goes to a person. `switchboard demo` shows the model's paths without a key.",
    ),
    "live": (
        "live model",
        "Messages are triaged and answered by the Anthropic API with the configured models.",
    ),
}


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def model_mode(settings: Settings) -> ModelMode:
    """Which model answers, from what is configured: none (offline), the demo model, or the API.

    ``SWITCHBOARD_DEMO`` alone does not make it the demo model: the demo model is a local server, so the
    model API must be one on this machine (``ANTHROPIC_BASE_URL`` on a loopback address, as
    ``switchboard demo`` sets it). The flag set by hand beside a real key is the live model."""
    if settings.llm.offline:
        return "offline"
    if settings.app.demo and _is_loopback(settings.llm.base_url):
        return "demo"
    return "live"


def _is_loopback(url: str | None) -> bool:
    if not url:
        return False
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host is not None and (host in LOOPBACK_HOSTS or host.startswith("127."))


def public_base_url(host: str, port: int) -> str:
    """The URL to open in a browser for a listening address (a wildcard address means this machine)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def next_steps(
    base_url: str,
    mode: ModelMode,
    command: str = CREATE_AGENT_COMMAND,
    *,
    demo_account: str | None = None,
    accounts_exist: bool = False,
) -> str:
    """The block printed once the server listens. ``demo_account``: the account ``switchboard demo`` just
    created (its password was printed above), to sign in with instead of creating one; ``accounts_exist``:
    the demo found accounts already."""
    title, text = MODE_TEXT[mode]
    if demo_account is not None:
        account = [f"  Sign in to the console and the reports as {demo_account} (password printed above)."]
    elif accounts_exist:
        account = ["  Sign in to the console and the reports with an existing agent account."]
    else:
        account = ["  The console needs an agent account; create the first one with:", f"    {command}"]
    return "\n".join(
        [
            "",
            f"Switchboard is running at {base_url}  (model: {title})",
            f"  {text}",
            f"  Demo shop with the chat widget:  {base_url}/demo",
            f"  Agent console:                   {base_url}/console/",
            f"  Reports:                         {base_url}/reports/",
            *account,
            "",
        ]
    )
