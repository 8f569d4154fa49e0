"""SQL statements that name their request: the contrib sqlcommenter, plus ``request_id``.

``opentelemetry-instrumentation-sqlalchemy`` appends a sqlcommenter comment carrying the
``traceparent`` of each statement's client span (``enable_commenter=True``). It has no option
for more keys; the one thing its comment builder reads besides its own values is the OTel
context entry :data:`TAGS_KEY`, the channel contrib's Flask instrumentation uses to add
``route``/``controller``. :class:`RequestIdTagger` merges ``request_id`` into that entry just
for the statement being sent: a class-level ``before_cursor_execute`` listener (SQLAlchemy
runs class-level listeners before the per-engine ones the instrumentation registers) attaches
it, and ``after_cursor_execute``/``handle_error`` detach it. Tags another integration set stay.
The contrib keeps the format (sorted keys, URL-quoted values, before a trailing ``;``, sampled
statements only), so a hostile id can never close the comment.

The key is contrib's internal contract, not a documented API: the package pins the contrib
cohort, and ``tests/integration/test_sql_commenter.py`` fails if a release changes it. Should a
listener between attach and detach raise, SQLAlchemy calls neither ``after_cursor_execute`` nor
``handle_error``: the entry then stays on that context until the next statement, which replaces
the id, or drops it outside a request (never a previous request's id).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context

from otel_logkit import _failsafe, context
from otel_logkit.config import Settings

TAGS_KEY = "SQLCOMMENTER_ORM_TAGS_AND_VALUES"
"""OTel context entry whose mapping contrib's sqlcommenter merges into every comment."""

REQUEST_ID_TAG = "request_id"
"""Comment key carrying the request id."""

_TOKEN_ATTR = "_otel_logkit_sqlcomment_token"  # noqa: S105 - an attribute name, not a secret


def instrument_kwargs(settings: Settings) -> dict[str, Any]:
    """``SQLAlchemyInstrumentor().instrument(...)`` options for ``LOGKIT_SQL_COMMENTER``.

    The comment keeps ``traceparent`` (and ``request_id``) only: the driver and SQLAlchemy
    version would add ~50 bytes to every statement and say nothing about the request.
    """
    if not settings.sql_commenter:
        return {"enable_commenter": False}
    return {
        "enable_commenter": True,
        "commenter_options": {"db_driver": False, "db_framework": False},
        "enable_attribute_commenter": False,
    }


class RequestIdTagger:
    """Adds the current request id to the comment of every statement of every Engine.

    ``instrument()``/``uninstrument()`` follow the instrumentors' names so that
    :mod:`otel_logkit.setup` keeps and undoes it like one.
    """

    def __init__(self) -> None:
        self._installed = False

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        """Whether the listeners are installed."""
        return self._installed

    def instrument(self, **_: Any) -> None:
        """Install the listeners on :class:`sqlalchemy.engine.Engine` (every engine)."""
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        if self._installed:
            return
        event.listen(Engine, "before_cursor_execute", _attach, retval=True)
        event.listen(Engine, "after_cursor_execute", _detach_after)
        event.listen(Engine, "handle_error", _detach_on_error)
        self._installed = True

    def uninstrument(self, **_: Any) -> None:
        """Remove the listeners."""
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        if not self._installed:
            return
        event.remove(Engine, "before_cursor_execute", _attach)
        event.remove(Engine, "after_cursor_execute", _detach_after)
        event.remove(Engine, "handle_error", _detach_on_error)
        self._installed = False


def _attach(  # noqa: PLR0917 - SQLAlchemy's before_cursor_execute signature
    conn: Any, cursor: Any, statement: str, parameters: Any, execution: Any, executemany: bool
) -> tuple[str, Any]:
    try:
        _tag(execution)
    except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app's query
        _failsafe.report("sql comment", exc)
    return statement, parameters


def _tag(execution: Any) -> None:
    request_id = context.request_id.get()
    current = otel_context.get_value(TAGS_KEY)
    tags = dict(current) if isinstance(current, dict) else {}
    if request_id is None:
        if REQUEST_ID_TAG not in tags:
            return
        del tags[REQUEST_ID_TAG]  # never a previous request's id outside a request
    else:
        tags[REQUEST_ID_TAG] = request_id
    previous = getattr(execution, _TOKEN_ATTR, None)
    if previous is not None:  # the same execution context again (insertmanyvalues batches)
        otel_context.detach(previous)
    setattr(execution, _TOKEN_ATTR, otel_context.attach(otel_context.set_value(TAGS_KEY, tags)))


def _detach(execution: Any) -> None:
    try:
        token = getattr(execution, _TOKEN_ATTR, None)
        if token is not None:
            setattr(execution, _TOKEN_ATTR, None)
            otel_context.detach(token)
    except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app's query
        _failsafe.report("sql comment", exc)


def _detach_after(  # noqa: PLR0917 - SQLAlchemy's after_cursor_execute signature
    conn: Any, cursor: Any, statement: str, parameters: Any, execution: Any, executemany: bool
) -> None:
    _detach(execution)


def _detach_on_error(exception_context: Any) -> None:
    execution = getattr(exception_context, "execution_context", None)
    if execution is not None:
        _detach(execution)


class SQLAlchemyInstrumentor:
    """Contrib's ``SQLAlchemyInstrumentor``, plus ``request_id`` in the comment when it comments.

    Raises:
        ImportError: ``opentelemetry-instrumentation-sqlalchemy`` is not installed
            (``pip install 'otel-logkit[sqlalchemy]'``).
    """

    def __init__(self) -> None:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor as _Contrib

        self._contrib = _Contrib()
        self._tagger = RequestIdTagger()

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        """Whether contrib's instrumentor is applied."""
        return bool(self._contrib.is_instrumented_by_opentelemetry)

    def instrument(self, **kwargs: Any) -> None:
        """Instrument SQLAlchemy; ``kwargs`` as contrib's (see :func:`instrument_kwargs`)."""
        self._contrib.instrument(**kwargs)
        # The contrib refuses SQLAlchemy releases outside its supported range (a logged
        # dependency conflict): then nothing comments and there is nothing to tag.
        if kwargs.get("enable_commenter") and self._contrib.is_instrumented_by_opentelemetry:
            self._tagger.instrument()

    def uninstrument(self, **kwargs: Any) -> None:
        """Undo :meth:`instrument`."""
        self._tagger.uninstrument()
        self._contrib.uninstrument(**kwargs)
