"""Transports (widget WebSocket, REST tickets): thin, they parse, call a service, serialise."""
