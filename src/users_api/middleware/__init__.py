"""The ASGI layers around Connexion's, one concern each; `users_api.app` lists them in order."""
