"""OpenTelemetry traces of a turn, sent by the real OTLP/HTTP exporter to a local receiver that decodes
the protobuf export."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from support import tracing
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.integration.test_widget_ws import (
    assistant_message,
    connect,
    is_answer,
    is_triage,
    open_session,
    start_server,
    triage_reply,
)

SECRET_WORDS = "my card 4111 1111 1111 1111 for the tent return"


class Receiver:
    """An OTLP/HTTP trace endpoint on a loopback port: every exported span, decoded."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.bodies: list[bytes] = []
        self.resource_attributes: dict[str, str] = {}
        self.turn_seen = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.bodies.append(body)
                for resource_spans in request.resource_spans:
                    for attribute in resource_spans.resource.attributes:
                        receiver.resource_attributes[attribute.key] = attribute.value.string_value
                    for scope in resource_spans.scope_spans:
                        receiver.spans.extend(scope.spans)
                if any(span.name == "turn" for span in receiver.spans):
                    receiver.turn_seen.set()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


def attributes(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attribute in span.attributes:
        kind = attribute.value.WhichOneof("value")
        out[attribute.key] = getattr(attribute.value, kind) if kind else None
    return out


async def test_a_turn_is_traced_with_triage_and_answer_overlapping(
    tmp_path: Path, fake: FakeAnthropic, redis_url: str, receiver: Receiver
) -> None:
    fake.reset()
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text="Returns are free within 30 days.") if is_answer(body) else None)
    proc = start_server(
        tmp_path, fake, redis_url, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_TRACES_EXPORTER="otlp",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )  # fmt: skip
    try:
        session = open_session(proc)
        async for client in connect(proc, session["token"]):
            await client.send({"type": "message", "client_id": "t-1", "text": SECRET_WORDS})
            await client.until(assistant_message)
        await asyncio.to_thread(receiver.turn_seen.wait, 10)
    finally:
        proc.kill()

    by_name = {span.name: span for span in receiver.spans}
    assert {"turn", "triage", "answer", "reply"} <= by_name.keys()
    turn, triage, answer, reply = (by_name[n] for n in ("turn", "triage", "answer", "reply"))
    assert len({s.trace_id for s in (turn, triage, answer, reply)}) == 1
    for child in (triage, answer, reply):
        assert child.parent_span_id == turn.span_id, child.name
    # Triage runs inside the answer's stream, not before it.
    assert triage.start_time_unix_nano < answer.end_time_unix_nano
    assert answer.start_time_unix_nano < triage.end_time_unix_nano
    assert reply.end_time_unix_nano <= turn.end_time_unix_nano
    turn_attributes = attributes(turn)
    assert turn_attributes["conversation_id"] == session["conversation_id"]
    assert (turn_attributes["outcome"], turn_attributes["intent"]) == ("answered", "returns_refunds")
    assert attributes(answer)["model"]
    assert receiver.resource_attributes["service.name"] == "switchboard"
    # No customer text in any span: the whole export is searched.
    export = b"".join(receiver.bodies)
    assert b"4111" not in export
    assert b"tent return" not in export


def test_no_exporter_configured_means_no_sdk_and_no_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing.configured()
    assert not tracing.setup()
    with tracing.span("turn", conversation_id="c") as span:
        assert span is None
    assert tracing.start("reply") is None
    assert tracing.configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not tracing.configured({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})
