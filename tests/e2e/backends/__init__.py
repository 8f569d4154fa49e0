"""Local stand-ins for the collector's log backends, each bound to 127.0.0.1 and restartable."""
