"""The web service: the app factory and what it wires around the spec and the handlers."""
