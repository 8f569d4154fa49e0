"""The logging chain: structlog processors, the stdlib bridge and OTLP emission."""
