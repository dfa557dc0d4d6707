"""Traces: the one module that names OpenTelemetry, so the services speak of spans and `traceparent`s only.

Off by default, and then nearly free: `span` hands back one shared no-op context manager and
`enabled()` is one attribute read, so a hot path pays a function call and no allocation. Off or
on, a W3C `traceparent` a caller sent is passed on (a service that does not trace is a
transparent intermediary, as the Trace Context recommendation asks): `span(parent=...)` binds it,
`current_traceparent()` gives it back. On (`configure`, by the standard `OTEL_*` variables or an
exporter a test passes), each span is made by the OpenTelemetry SDK on this module's own
`TracerProvider` (the process-wide global one is left alone, so a test can switch it on and off),
and while a span is current every log line carries its `trace_id` and `span_id`
(`services.observability.logs`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.observability.logs import log_ids

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "TRACEPARENT",
    "OpenSpan",
    "configure",
    "current_traceparent",
    "enabled",
    "shutdown",
    "span",
    "start_span",
    "trace_id_of",
    "traceparents",
    "valid_traceparent",
]

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACER_NAME = "flagstream"
_PROPAGATOR = TraceContextTextMapPropagator()  # W3C Trace Context: what is read from and written to a carrier
Kind = Literal["internal", "server", "client", "producer", "consumer"]

_NOOP: AbstractContextManager[None] = contextlib.nullcontext()  # a block that yields None: no span
# The caller's traceparent while tracing is off: what `current_traceparent` passes on.
_passed: contextvars.ContextVar[str | None] = contextvars.ContextVar("flagstream_traceparent", default=None)


class _State:
    tracer: Tracer | None = None
    provider: TracerProvider | None = None


_state = _State()


def enabled() -> bool:
    """Whether spans are made (and exported) in this process."""
    return _state.tracer is not None


def valid_traceparent(value: str | bytes | None) -> str | None:
    """`value` as the W3C propagator reads it, if it is a traceparent this service can continue, else None.

    (A bad or missing one means a new trace: the propagator's rules, e.g. version `ff` or all-zero ids refused.)
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, _PROPAGATOR.extract({TRACEPARENT: value}))
    return carrier.get(TRACEPARENT)


def trace_id_of(traceparent: str) -> str:
    """The 32 hex digits of a (valid) traceparent's trace id."""
    return traceparent[3:35]


def _span_id_of(traceparent: str) -> str:
    return traceparent[36:52]


def configure(
    service_name: str,
    *,
    environ: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
) -> bool:
    """Switch tracing on if the environment asks for it, or with `exporter` (tests: the in-memory one).

    Read: `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER` (`none`, `console`, `otlp`; unset means `otlp`
    when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, else `none`),
    `OTEL_SERVICE_NAME` (else `service_name`); the SDK itself reads the sampler's and the OTLP
    exporter's variables. Returns whether tracing is on. A second call replaces the first.
    """
    env = os.environ if environ is None else environ
    shutdown()
    exporters = [exporter] if exporter is not None else _exporters_from(env)
    if not exporters:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    name = env.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    for chosen in exporters:
        # A test's exporter sees each span as it ends; a real one is fed off the request path, in batches.
        processor = SimpleSpanProcessor(chosen) if exporter is not None else BatchSpanProcessor(chosen)
        provider.add_span_processor(processor)
    _state.provider, _state.tracer = provider, provider.get_tracer(TRACER_NAME)
    log.info("tracing on: service %s, exporting to %s", name, ", ".join(type(e).__name__ for e in exporters))
    return True


def _exporters_from(env: Mapping[str, str]) -> list[SpanExporter]:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = env.get("OTEL_TRACES_EXPORTER")
    if names is None:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        names = "otlp" if endpoint else "none"
    exporters: list[SpanExporter] = []
    for name in (n.strip().lower() for n in names.split(",")):
        if name in ("", "none"):
            continue
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                log.error(
                    "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install 'flagstream[otlp]'; "
                    "traces are not exported"
                )
                continue
            exporters.append(OTLPSpanExporter())
        else:
            log.error("OTEL_TRACES_EXPORTER names %r, which this service does not know (none, console, otlp)", name)
    return exporters


def shutdown() -> None:
    """Export what is pending and switch tracing off (a service's last step; tests between cases)."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


class OpenSpan:
    """A span of ours: the block's current one (`span`), or one the caller ends (`start_span`, e.g. on an ack)."""

    __slots__ = ("_span", "traceparent")

    def __init__(self, otel_span: Span) -> None:
        self._span = otel_span
        self.traceparent = _traceparent(otel_span)

    @property
    def trace_id(self) -> str:
        return trace_id_of(self.traceparent)

    @property
    def span_id(self) -> str:
        return _span_id_of(self.traceparent)

    def rename(self, name: str) -> None:
        self._span.update_name(name)

    def set(self, name: str, value: str | int | float | bool) -> None:
        self._span.set_attribute(name, value)

    def fail(self, error: BaseException | None = None) -> None:
        """Mark the span failed (with the exception, when there is one)."""
        if error is not None:
            self._span.record_exception(error)
        described = None if error is None else f"{type(error).__name__}: {error}"
        self._span.set_status(trace.Status(trace.StatusCode.ERROR, described))

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.fail(error)
        self._span.end()


def span(
    name: str,
    *,
    parent: str | bytes | None = None,
    links: Sequence[str] = (),
    attributes: Mapping[str, Any] | None = None,
    kind: Kind = "internal",
) -> AbstractContextManager[OpenSpan | None]:
    """A span, current inside the block (which gets it), continuing `parent` (a traceparent) when valid.

    Off: None, from the shared no-op, or, given a valid `parent`, a block that passes it on (`current_traceparent`)
    and puts its trace id on the block's log lines.
    """
    if _state.tracer is None and parent is None:
        return _NOOP
    valid = valid_traceparent(parent)
    if _state.tracer is None:
        return _NOOP if valid is None else _passing(valid)
    return _current(_state.tracer, name, valid, links, attributes, kind)


def start_span(
    name: str,
    *,
    parent: str | None = None,
    links: Sequence[str] = (),
    attributes: Mapping[str, Any] | None = None,
    kind: Kind = "internal",
    start_time_ns: int | None = None,
) -> OpenSpan | None:
    """A span that is not made current (None while tracing is off): its traceparent goes on a record.

    `parent` that is missing or not valid: a new trace (never the caller's current span, which a
    background task such as the relay does not have). `start_time_ns` (`time.time_ns()`) dates a
    span that stands for work already under way."""
    tracer = _state.tracer
    if tracer is None:
        return None
    context = _context(parent) or Context()
    otel_span = tracer.start_span(
        name,
        context=context,
        links=_links(links),
        attributes=attributes,
        kind=_kind(kind),
        start_time=start_time_ns,
    )
    return OpenSpan(otel_span)


def current_traceparent() -> str | None:
    """The traceparent of the current span, or the one passed on while tracing is off (None if neither)."""
    if _state.tracer is None:
        return _passed.get()
    current = trace.get_current_span()
    return _traceparent(current) if current.get_span_context().is_valid else None


def traceparents(headers: Iterable[tuple[str, bytes]] | None) -> Iterator[str]:
    """The valid `traceparent` headers of a Kafka record (normally one)."""
    for name, value in headers or ():
        if name == TRACEPARENT:
            found = valid_traceparent(value)
            if found is not None:
                yield found


@contextlib.contextmanager
def _passing(traceparent: str) -> Iterator[OpenSpan | None]:
    token = _passed.set(traceparent)
    try:
        with log_ids(trace_id=trace_id_of(traceparent)):
            yield None
    finally:
        _passed.reset(token)


@contextlib.contextmanager
def _current(
    tracer: Tracer,
    name: str,
    parent: str | None,
    links: Sequence[str],
    attributes: Mapping[str, Any] | None,
    kind: Kind,
) -> Iterator[OpenSpan | None]:
    with tracer.start_as_current_span(
        name,
        context=_context(parent),
        links=_links(links),
        attributes=attributes,
        kind=_kind(kind),
        record_exception=False,
        set_status_on_exception=False,
    ) as otel_span:
        ours = OpenSpan(otel_span)
        try:
            with log_ids(trace_id=ours.trace_id, span_id=ours.span_id):
                yield ours
        except Exception as exc:
            ours.fail(exc)
            raise


def _links(traceparents: Sequence[str]) -> list[trace.Link]:
    contexts = (_context(tp) for tp in traceparents)
    return [trace.Link(trace.get_current_span(c).get_span_context()) for c in contexts if c is not None]


def _traceparent(otel_span: Span) -> str:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(otel_span))
    return carrier[TRACEPARENT]


def _context(parent: str | None) -> Context | None:
    """The context continuing `parent` (None, the current one, when there is none or it is not valid)."""
    if parent is None:
        return None
    context = _PROPAGATOR.extract({TRACEPARENT: parent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def _kind(kind: Kind) -> trace.SpanKind:
    return trace.SpanKind[kind.upper()]
