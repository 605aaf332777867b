"""The functions the spec's operationIds name: HTTP in, a store call, `(body, status, headers)` out.

They import no web framework: the app factory binds `store` and the operation's header
parameters (see `users_api.resolver`), and the spec has validated every argument already.
"""
