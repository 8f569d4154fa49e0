"""Redaction of secrets and personal data wherever data leaves the process."""
