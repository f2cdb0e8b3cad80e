"""Where a newcomer goes next: the lines printed once the server listens and the landing page at ``/``.

Pure: text from the base URL and the model mode, no I/O (the server prints it, a route renders it)."""

from __future__ import annotations

from typing import Literal

from support.settings import Settings

ModelMode = Literal["demo", "offline", "live"]

CREATE_AGENT_COMMAND = (
    "switchboard create-agent --email you@example.com --password 'a-long-password' --name Alex --role admin"
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


def model_mode(settings: Settings) -> ModelMode:
    """Which model answers: the demo model, none (offline), or the configured API."""
    if settings.llm.offline:
        return "offline"
    return "demo" if settings.app.demo else "live"


def public_base_url(host: str, port: int) -> str:
    """The URL to open in a browser for a listening address (a wildcard address means this machine)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def next_steps(base_url: str, mode: ModelMode, command: str = CREATE_AGENT_COMMAND) -> str:
    """The block printed once the server listens."""
    title, text = MODE_TEXT[mode]
    return "\n".join(
        [
            "",
            f"Switchboard is running at {base_url}  (model: {title})",
            f"  {text}",
            f"  Demo shop with the chat widget:  {base_url}/demo",
            f"  Agent console:                   {base_url}/console/",
            f"  Reports:                         {base_url}/reports/",
            "  The console needs an agent account; create the first one with:",
            f"    {command}",
            "",
        ]
    )
