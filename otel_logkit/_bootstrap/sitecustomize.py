"""Run by every Python process started under ``otel-logkit-instrument`` (found through ``PYTHONPATH``).

The counterpart of the official runner's sitecustomize: it reaches ``uvicorn --workers N`` and
``--reload`` children the same way.
"""

from otel_logkit._autoinit import initialize

initialize()
