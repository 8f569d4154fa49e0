"""An Elasticsearch stand-in: enough of the REST API for the collector's elasticsearch exporter.

It answers ``GET /`` with version information, marks every response with
``X-Elastic-Product: Elasticsearch`` (clients refuse a server without it), accepts gzip bulk
bodies at ``POST /_bulk`` and ``POST /<index>/_bulk``, and answers per item as Elasticsearch does
(``create`` -> 201, ``index`` -> 200 or 201, ``errors`` true when any item failed). It can reject
the next N items with 429 to exercise the exporter's per-document retry. Documents are kept per
index in ``documents``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit

from tests.e2e.backends._http import StandIn

VERSION = {
    "name": "es-stand-in",
    "cluster_name": "e2e",
    "cluster_uuid": "e2e-stand-in",
    "version": {
        "number": "8.17.0",
        "build_flavor": "default",
        "lucene_version": "9.12.0",
        "minimum_wire_compatibility_version": "7.17.0",
        "minimum_index_compatibility_version": "7.0.0",
    },
    "tagline": "You Know, for Search",
}
_JSON = {"Content-Type": "application/json", "X-Elastic-Product": "Elasticsearch"}


class ElasticsearchStandIn(StandIn):
    """Keeps bulk-indexed documents in ``documents[index]``."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self.documents: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.reject_next_items = 0
        self.rejected_items = 0
        self.bulk_requests: list[dict[str, str]] = []

    def logs(self) -> list[dict[str, Any]]:
        """Every log record stored in a ``logs-*`` data stream (span events, stored there too, excluded)."""
        with self.lock:
            return [
                doc
                for index, docs in self.documents.items()
                if index.startswith("logs-")
                for doc in docs
                if "event_name" not in doc
            ]

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        route = urlsplit(path).path.rstrip("/")
        if route == "" and method in ("GET", "HEAD"):
            return 200, _JSON, json.dumps(VERSION).encode()
        if method in ("POST", "PUT") and route.endswith("/_bulk"):
            return self._bulk(route, headers, body)
        error = {"error": {"type": "no_handler_found", "reason": f"no handler for {method} {route}"}, "status": 400}
        return 400, _JSON, json.dumps(error).encode()

    def _bulk(self, route: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        default_index = route[: -len("/_bulk")].lstrip("/") or None
        lines = [line for line in body.split(b"\n") if line.strip()]
        if len(lines) % 2:
            error = {"error": {"type": "illegal_argument_exception", "reason": "bulk body must be pairs"}}
            return 400, _JSON, json.dumps({**error, "status": 400}).encode()
        items: list[dict[str, Any]] = []
        with self.lock:
            self.bulk_requests.append(headers)
            for action_line, source_line in zip(lines[::2], lines[1::2], strict=True):
                action = json.loads(action_line)
                op, meta = next(iter(action.items()))
                index = meta.get("_index") or default_index
                if op not in ("create", "index") or not index:
                    items.append(
                        {
                            op: {
                                "_index": index,
                                "status": 400,
                                "error": {"type": "action_request_validation_exception", "reason": "unsupported"},
                            }
                        }
                    )
                    continue
                if self.reject_next_items > 0:
                    self.reject_next_items -= 1
                    self.rejected_items += 1
                    reject = {"type": "es_rejected_execution_exception", "reason": "rejected by stand-in"}
                    items.append({op: {"_index": index, "status": 429, "error": reject}})
                    continue
                self.documents[index].append(json.loads(source_line))
                seq = len(self.documents[index])
                items.append(
                    {op: {"_index": index, "_id": f"{index}-{seq}", "_version": 1, "result": "created", "status": 201}}
                )
        errors = any(next(iter(item.values()))["status"] >= 300 for item in items)
        return 200, _JSON, json.dumps({"took": 1, "errors": errors, "items": items}).encode()
