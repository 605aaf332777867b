"""The web service: the app factory and what it wires around the spec and the handlers."""

import warnings

# Connexion imports Starlette's test client at start, which warns unless a second HTTP client
# (httpx2) is installed beside httpx; the service never uses the test client.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
