"""Switchboard: customer-support chat with triage, cached-policy answers and human handoff."""

__version__ = "0.1.0"
