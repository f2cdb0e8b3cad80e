"""OpenTelemetry traces of a customer turn, when an exporter is configured.

Configured by the standard OpenTelemetry environment: ``OTEL_TRACES_EXPORTER=otlp`` or an
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (and the rest of the ``OTEL_*``
variables the SDK reads: headers, protocol, service name, sampler). Then :func:`setup` installs the SDK with
a batching OTLP/HTTP exporter, and a turn records the span ``turn`` with the children ``triage`` and
``answer`` (concurrent) and ``reply`` (streaming and persisting the answer).

With none of those set nothing is imported or installed: :func:`span` hands back one shared no-op context
and :func:`start` None, so a turn pays a function call and a branch per span.

Attributes never carry customer text or personal data: the conversation id, the message's ``seq``, model
names, the intent, the outcome, token counts. The SDK lives in the optional ``tracing`` extra; configuring
an exporter without it installed logs a warning and traces nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

TRACER_NAME = "switchboard"
_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()
_tracer: Any = None  # an opentelemetry Tracer once setup() installed the SDK
_provider: Any = None

AttributeValue = str | int | float | bool | None


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (an OTLP exporter or endpoint; ``none`` turns them off)."""
    env = os.environ if environ is None else environ
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if exporter:
        return True
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup() -> bool:
    """Install the SDK and the OTLP/HTTP exporter once per process, if configured; whether traces are on."""
    global _tracer, _provider
    if _tracer is not None:
        return True
    if not configured():
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "an OpenTelemetry exporter is configured but the SDK is not installed "
            "(pip install 'switchboard[tracing]'); no traces"
        )
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter not in ("otlp", "otlp_proto_http"):
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported (only otlp over HTTP); no traces", exporter)
        return False
    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES still win: Resource.create merges them over this default.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "switchboard"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider = provider
    _tracer = provider.get_tracer(TRACER_NAME)
    log.info("OpenTelemetry traces on: OTLP/HTTP exporter")
    return True


def flush(timeout_s: float = 5.0) -> None:
    """Send the spans still batched (at shutdown); the provider stays usable."""
    if _provider is not None:
        _provider.force_flush(int(timeout_s * 1000))


def _attributes(attributes: Mapping[str, AttributeValue]) -> dict[str, str | int | float | bool]:
    return {key: value for key, value in attributes.items() if value is not None}


def span(name: str, **attributes: AttributeValue) -> contextlib.AbstractContextManager[Any]:
    """A span around a block, current inside it (tasks started in it become its children); a no-op context
    yielding None when tracing is off."""
    if _tracer is None:
        return _NO_SPAN
    span_context: contextlib.AbstractContextManager[Any] = _tracer.start_as_current_span(
        name, attributes=_attributes(attributes)
    )
    return span_context


def start(name: str, **attributes: AttributeValue) -> Any:
    """A span started now under the current one and ended by :func:`end` (for a phase that is not one
    block); None when tracing is off."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, attributes=_attributes(attributes))


def annotate(current: Any, **attributes: AttributeValue) -> None:
    """Set attributes on a span (None: tracing off, nothing to do)."""
    if current is not None:
        current.set_attributes(_attributes(attributes))


def end(current: Any, **attributes: AttributeValue) -> None:
    """Set the last attributes and end a span from :func:`start` (None: nothing to do)."""
    if current is not None:
        current.set_attributes(_attributes(attributes))
        current.end()
