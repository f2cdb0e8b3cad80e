"""Test doubles for the services Switchboard talks to (the Anthropic API first of all)."""
