"""Binds each operation's handler to the app's store and to its request's arguments, and runs it
where the app class calls it."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, cast

from connexion import context
from connexion.resolver import Resolver
from starlette.types import Scope

from users_api.arguments import CALLER, HandlerArguments
from users_api.connexion_adapter import parsed_body
from users_api.store import UserStore


class StoreResolver(Resolver):
    """Resolves operationIds as Connexion does, then gives the handler its `store`, and the
    rest of its arguments from the request (see `HandlerArguments`), whatever Connexion passes.

    So both app classes call a handler the same way, with arguments worked out once per
    operation. The handlers are coroutines. `AsyncApp` awaits them on its event loop.
    `FlaskApp` calls them from its WSGI threads, where Connexion would run each in a new event
    loop on a new thread (asgiref's `async_to_sync`); with `in_thread_loops`, each of those
    threads keeps a loop of its own instead, and `close()` closes them.
    """

    def __init__(
        self,
        store: UserStore,
        operations: Mapping[str, Mapping[str, Any]],
        *,
        in_thread_loops: bool = False,
    ) -> None:
        super().__init__()
        self._store = store
        self._operations = operations
        self._loops = ThreadLoops() if in_thread_loops else None

    def resolve_function_from_operation_id(self, operation_id: str) -> Callable[..., Any]:
        handler = _bind(super().resolve_function_from_operation_id(operation_id), self._store)
        arguments = HandlerArguments(self._operations[operation_id.rpartition(".")[2]], handler)

        def of_request() -> dict[str, Any]:
            scope = cast(Scope, context.scope)
            caller = cast(dict[str, Any], context.context).get(CALLER)
            return arguments.of(scope, parsed_body(scope), caller)

        if self._loops is None:

            async def call(*_: Any, **__: Any) -> Any:
                return await handler(**of_request())

            return call
        loops = self._loops
        return lambda *_, **__: loops.run(handler(**of_request()))

    def close(self) -> None:
        if self._loops is not None:
            self._loops.close()


class ThreadLoops:
    """An event loop for each thread that runs a coroutine through `run`; `close()`, or at the
    latest the collection of this object, closes them all."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._lock = threading.Lock()
        weakref.finalize(self, _close_all, self._loops, self._lock)

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """`coroutine` run to its end on the calling thread's loop."""
        return self._loop().run_until_complete(coroutine)

    def close(self) -> None:
        _close_all(self._loops, self._lock)

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed():
            loop = self._local.loop = asyncio.new_event_loop()
            with self._lock:
                self._loops.append(loop)
        return loop


def _close_all(loops: list[asyncio.AbstractEventLoop], lock: threading.Lock) -> None:
    """Close every loop but one still running a call (a request past the shutdown grace): that
    one stays listed, for the next close."""
    with lock:
        for loop in loops:
            if not loop.is_running():
                loop.close()
        loops[:] = [loop for loop in loops if not loop.is_closed()]


def _bind(handler: Callable[..., Any], store: UserStore) -> Callable[..., Any]:
    if "store" not in inspect.signature(handler).parameters:
        return handler
    return functools.partial(handler, store=store)
