"""LOGKIT_SQL_COMMENTER: contrib's sqlcommenter on SQLAlchemy, plus request_id, on a real SQLite.

The SQL checked is what SQLite itself ran (``set_trace_callback`` on the DBAPI connection), so
the tests see exactly what a database would log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy
from opentelemetry import context as otel_context
from opentelemetry import trace

from otel_logkit import context, sql
from otel_logkit.testing import Captured, capture

COMMENT = re.compile(r" /\*(?P<body>[^*]*)\*/$")


def _engine(executed: list[str]) -> sqlalchemy.Engine:
    # sqlalchemy.create_engine, looked up now: the instrumentation wraps the module attribute.
    engine = sqlalchemy.create_engine("sqlite://")

    @sqlalchemy.event.listens_for(engine, "connect")
    def trace_sql(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.set_trace_callback(executed.append)

    return engine


@pytest.fixture(params=[True, False], ids=["commenter-on", "commenter-off"])
def commenter(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def run(commenter: bool) -> Iterator[tuple[Captured, list[str], sqlalchemy.Engine]]:
    executed: list[str] = []
    with capture(env="test", service="shop", instrument=True, sql_commenter=commenter) as captured:
        yield captured, executed, _engine(executed)


def _select(engine: sqlalchemy.Engine, request_id: str | None) -> None:
    token = context.request_id.set(request_id)
    try:
        with trace.get_tracer("test").start_as_current_span("request"), engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    finally:
        context.request_id.reset(token)


def _comment(executed: list[str]) -> dict[str, str]:
    match = COMMENT.search([s for s in executed if s.startswith("SELECT 1")][-1])
    assert match is not None
    return dict(pair.split("=", 1) for pair in match["body"].split(","))


def test_commenter_is_off_by_default(make_settings: Any) -> None:
    """Without LOGKIT_SQL_COMMENTER, contrib's commenter stays off."""
    assert {"enable_commenter": False} == sql.instrument_kwargs(make_settings())
    assert sql.instrument_kwargs(make_settings(LOGKIT_SQL_COMMENTER="TRUE"))["enable_commenter"] is True


def test_statement_carries_request_id_and_the_traceparent_of_its_own_span(
    run: tuple[Captured, list[str], sqlalchemy.Engine], commenter: bool
) -> None:
    """On: request_id and the SQL span's traceparent, sorted, quoted; off: the statement untouched."""
    captured, executed, engine = run
    _select(engine, "req-42.a")
    (db_span,) = [s for s in captured.spans() if s.kind == trace.SpanKind.CLIENT and s.name.startswith("SELECT")]
    if not commenter:
        assert "SELECT 1" in executed
        return
    ctx = db_span.get_span_context()
    assert {
        "request_id": "'req-42.a'",
        "traceparent": f"'00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}'",
    } == _comment(executed)
    assert list(_comment(executed)) == ["request_id", "traceparent"]


def test_the_span_keeps_the_statement_without_the_comment(run: tuple[Captured, list[str], sqlalchemy.Engine]) -> None:
    """db.statement is the same with the commenter on or off (no per-request cardinality)."""
    captured, _, engine = run
    _select(engine, "req-1")
    (db_span,) = [s for s in captured.spans() if s.kind == trace.SpanKind.CLIENT and s.name.startswith("SELECT")]
    assert "SELECT 1" == (db_span.attributes or {})["db.statement"]


@pytest.mark.parametrize("commenter", [True], ids=["commenter-on"])
@pytest.mark.parametrize(
    "hostile",
    ["x'*/ DROP TABLE orders; --", "a*/b", "line\nbreak", "é' OR '1'='1"],
    ids=["quote-comment-close", "comment-close", "newline", "non-ascii-quote"],
)
def test_a_hostile_request_id_cannot_leave_the_comment(
    run: tuple[Captured, list[str], sqlalchemy.Engine], hostile: str
) -> None:
    """Whatever the id (set by user code, not the middleware), it is URL-quoted inside one comment."""
    _, executed, engine = run
    _select(engine, hostile)
    statement = [s for s in executed if s.startswith("SELECT 1")][-1]
    assert 1 == statement.count("/*") == statement.count("*/")
    assert statement.endswith("*/")
    assert "'" not in _comment(executed)["request_id"][1:-1]
    assert "\n" not in statement


@pytest.mark.parametrize("commenter", [True], ids=["commenter-on"])
def test_outside_a_request_only_the_traceparent(run: tuple[Captured, list[str], sqlalchemy.Engine]) -> None:
    """No request id (a job without one, start-up): no request_id key, and none left over from before."""
    _, executed, engine = run
    _select(engine, "req-before")
    _select(engine, None)
    assert ["traceparent"] == list(_comment(executed))


@pytest.mark.parametrize("commenter", [True], ids=["commenter-on"])
def test_tags_set_by_another_integration_are_kept_and_restored(
    run: tuple[Captured, list[str], sqlalchemy.Engine],
) -> None:
    """Flask's route/controller tags stay in the comment; the context holds them unchanged afterwards."""
    _, executed, engine = run
    tags = {"route": "/orders"}
    token = otel_context.attach(otel_context.set_value(sql.TAGS_KEY, tags))
    try:
        _select(engine, "req-7")
        assert {"request_id", "route", "traceparent"} == set(_comment(executed))
        assert otel_context.get_value(sql.TAGS_KEY) is tags
        assert {"route": "/orders"} == tags
    finally:
        otel_context.detach(token)


@pytest.mark.parametrize("commenter", [True], ids=["commenter-on"])
def test_a_failing_statement_leaves_no_tags_behind(run: tuple[Captured, list[str], sqlalchemy.Engine]) -> None:
    """A statement that fails in the database detaches the request's tags (handle_error)."""
    _, _, engine = run
    token = context.request_id.set("req-9")
    try:
        with engine.connect() as conn, pytest.raises(sqlalchemy.exc.OperationalError):
            conn.execute(sqlalchemy.text("SELECT * FROM no_such_table"))
        assert otel_context.get_value(sql.TAGS_KEY) is None
    finally:
        context.request_id.reset(token)


def test_uninstrumented_after_reset() -> None:
    """reset() removes the listeners: a new engine's statements carry no comment."""
    with capture(env="test", instrument=True, sql_commenter=True):
        pass
    executed: list[str] = []
    engine = _engine(executed)
    with trace.get_tracer("test").start_as_current_span("request"), engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT 1"))
    assert "SELECT 1" in executed
