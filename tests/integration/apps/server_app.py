"""The FastAPI test app as a module, for ``otel-logkit-instrument uvicorn ...server_app:app``."""

from tests.integration.apps.web_apps import make_fastapi_app

app = make_fastapi_app()
