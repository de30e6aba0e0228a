"""OpenTelemetry set-up and W3C trace context on NATS headers.

The HTTP edge starts a span from the incoming ``traceparent``; :func:`inject` writes the
current context into outgoing NATS headers; :func:`extract` continues it on the other side.
So one trace runs HTTP -> NATS -> service (-> libvirt/IPMI in the services that call them).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from .errors import ValidationFailed
from .settings import ServiceSettings

TRACER_NAME = "metalbus"


def tracer() -> trace.Tracer:
    """The tracer every metalbus module uses."""
    return trace.get_tracer(TRACER_NAME)


def setup_telemetry(service: str, settings: ServiceSettings) -> TracerProvider | None:
    """Install a tracer provider for this process, as the settings ask.

    With ``otel_exporter=none`` no provider is installed (spans are no-ops and cost
    nearly nothing) unless one is already there (tests install their own).
    """
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    if settings.otel_exporter == "none":
        return None
    exporter: SpanExporter
    if settings.otel_exporter == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ValidationFailed(
                "otel_exporter=otlp needs the 'otlp' extra (pip install metalbus-shared[otlp])",
                field="otel_exporter",
            ) from exc
        exporter = (
            OTLPSpanExporter(endpoint=settings.otel_endpoint)
            if settings.otel_endpoint
            else OTLPSpanExporter()
        )
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": f"metalbus-{service}", "service.instance.id": settings.instance_id}
        )
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def enabled() -> bool:
    """Whether spans are recorded in this process (a tracer provider is installed)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def span(
    name: str,
    *,
    kind: trace.SpanKind,
    carrier: Mapping[str, str] | None = None,
    attributes: dict[str, str] | None = None,
) -> AbstractContextManager[trace.Span]:
    """A span continuing the trace in ``carrier`` (or the current one).

    Without a tracer provider this is a no-op context yielding a non-recording span: the
    hot paths (every bus request and reply) then pay nothing for tracing.
    """
    if not enabled():
        return nullcontext(trace.INVALID_SPAN)
    return tracer().start_as_current_span(
        name,
        context=extract(carrier) if carrier is not None else None,
        kind=kind,
        attributes=attributes,
    )


def trace_headers() -> dict[str, str]:
    """Headers carrying the current trace context (none when tracing is off)."""
    return dict(inject({})) if enabled() else {}


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Write the current trace context (``traceparent``/``tracestate``) into headers."""
    propagate.inject(headers)
    return headers


def extract(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context carried by incoming headers (an empty context when there is none)."""
    return propagate.extract(dict(headers or {}))


def current_trace_id() -> str | None:
    """Hex trace id of the active span, for logs and problem documents."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
