"""Fake third-party services on 127.0.0.1 for tests and the example shop (payment, SMS)."""
