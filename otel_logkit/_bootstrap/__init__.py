"""The directory ``otel-logkit-instrument`` puts first on ``PYTHONPATH``: it holds only a sitecustomize."""
