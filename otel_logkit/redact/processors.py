"""Where redaction plugs in: a structlog processor and a span exporter wrapper."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status

if TYPE_CHECKING:
    from opentelemetry.util.types import Attributes
    from structlog.typing import EventDict, WrappedLogger

    from otel_logkit.redact.engine import Redactor


class RedactingProcessor:
    """A structlog processor that redacts the event dict just before it is rendered.

    Place it after the processors that add or format fields (``format_exc_info`` included,
    so that tracebacks are redacted as text) and right before the renderer.

    Args:
        redactor: the configured :class:`~otel_logkit.redact.Redactor`.
        trusted: keys whose values the chain itself set (never user data), left alone.
    """

    __slots__ = ("_redact", "_trusted")

    def __init__(self, redactor: Redactor, trusted: frozenset[str] = frozenset()) -> None:
        self._redact = redactor.redact_event
        self._trusted = trusted

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        """Redact ``event_dict`` in place and return it."""
        return self._redact(event_dict, trusted=self._trusted)


class RedactingSpanExporter(SpanExporter):
    """Wraps a span exporter and redacts names, attributes, events, links and status first.

    The live spans are never modified: a span with something to redact is exported as a
    redacted copy, other spans are passed through as they are.

    Args:
        inner: the exporter that receives the redacted spans.
        redactor: the configured :class:`~otel_logkit.redact.Redactor`.
    """

    def __init__(self, inner: SpanExporter, redactor: Redactor) -> None:
        self.inner = inner
        self.redactor = redactor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Redact each span, then hand the batch to the wrapped exporter."""
        return self.inner.export([self.redact_span(span) for span in spans])

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)

    def redact_span(self, span: ReadableSpan) -> ReadableSpan:
        """Return ``span`` itself when it holds nothing to redact, else a redacted copy."""
        redactor = self.redactor
        changed = False
        name = redactor.redact_text(span.name)
        changed |= name != span.name
        original = span.attributes  # a fresh read-only proxy on every access: read it once
        attributes = self._attributes(original)
        changed |= attributes is not original
        events: list[Event] = []
        for event in span.events:
            original = event.attributes
            event_attributes = self._attributes(original)
            if event_attributes is not original:
                changed = True
                events.append(Event(event.name, event_attributes, event.timestamp))
            else:
                events.append(event)
        links: list[Link] = []
        for link in span.links:
            original = link.attributes
            link_attributes = self._attributes(original)
            if link_attributes is not original:
                changed = True
                links.append(Link(link.context, link_attributes))
            else:
                links.append(link)
        status = span.status
        if status.description:
            description = redactor.redact_text(status.description)
            if description != status.description:
                changed = True
                status = Status(status.status_code, description)
        if not changed:
            return span
        return ReadableSpan(
            name=name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=events,
            links=links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _attributes(self, attributes: Attributes) -> Attributes:
        """Redacted attributes, or the very same object when nothing changed."""
        if not attributes:
            return attributes
        redacted: dict[str, Any] = self.redactor.redact_attributes(attributes)
        for key, value in attributes.items():
            if redacted.get(key, value) != value or key not in redacted:
                return redacted
        return attributes
