"""Outbound gateway calls (payment, SMS, ...): rules, hooks and sanitized summaries."""
