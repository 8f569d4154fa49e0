"""CloudWatch Logs on 127.0.0.1: moto's server in this process, read back with boto3.

moto keeps its state in module-level backends, so ``stop()``/``start()`` on the same port is an
outage that loses nothing on the server side.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
# Dummy credentials for moto; the collector gets the same through its environment.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION}


class CloudWatchStandIn:
    """A restartable moto server with a helper that reads back one group/stream."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: ThreadedMotoServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self) -> Any:
        return boto3.client(
            "logs",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def events(self, group: str, stream: str) -> list[dict[str, Any]]:
        """Every event of ``group``/``stream`` as ``{"timestamp": ms, "message": parsed JSON}``."""
        client = self.client()
        try:
            streams = client.describe_log_streams(logGroupName=group, logStreamNamePrefix=stream)["logStreams"]
        except client.exceptions.ResourceNotFoundException:
            return []
        if not any(s["logStreamName"] == stream for s in streams):
            return []
        events: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(1000):  # bounded paging
            kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
            if token:
                kwargs["nextToken"] = token
            page = client.get_log_events(**kwargs)
            events.extend({"timestamp": e["timestamp"], "message": json.loads(e["message"])} for e in page["events"])
            if not page["events"] or page["nextForwardToken"] == token:
                break
            token = page["nextForwardToken"]
        return events
