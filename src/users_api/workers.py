"""What each process of `serve --workers N` runs: the app, and a watch on the master that started
it, so that no worker outlives it (not even a master killed with SIGKILL)."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import shutil
import signal
import threading
from pathlib import Path

from connexion import AbstractApp

from users_api import app

RUN_DIR = "USERS_API_RUN_DIR"
"""The folder `serve` makes for its workers (their metrics, a demo key's digest) and removes as it
stops; if it was killed instead, the last of its workers removes it."""


def create_app() -> AbstractApp:
    """uvicorn's factory in each worker."""
    run = Path(os.environ[RUN_DIR])
    # Held shared for this worker's life: a worker that can take it alone is the last one.
    lock = os.open(run / "workers.lock", os.O_RDONLY | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_SH)

    def at_shutdown() -> None:
        if _master_alive():
            return  # it removes the folder itself once every worker has stopped
        fcntl.flock(lock, fcntl.LOCK_UN)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another worker is still stopping, and will
        shutil.rmtree(run, ignore_errors=True)

    _stop_with_the_master()
    return app.create_app(at_shutdown=at_shutdown)


def _stop_with_the_master() -> None:
    """SIGTERM to this worker (uvicorn's graceful stop) when its master dies, however it dies.

    multiprocessing hands a spawned process a pipe that only its parent holds open: it reads as
    closed the moment the parent is gone, even if that was before this ran (so no race, unlike
    checking getppid() or PR_SET_PDEATHSIG, and on any POSIX system)."""
    master = multiprocessing.parent_process()
    if master is None:
        return

    def watch() -> None:
        master.join()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="watch-master", daemon=True).start()


def _master_alive() -> bool:
    master = multiprocessing.parent_process()
    return master is not None and master.is_alive()
