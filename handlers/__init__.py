"""The functions the spec's operationIds name: HTTP in, a store call, `(body, status, headers)` out.

They import no web framework: the app factory binds `store` and the operation's header
parameters (see `service.resolver`), and the spec has validated every argument already.
"""
