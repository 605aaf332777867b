"""Throughput, latency, CPU and memory of the service against its peers, measured with wrk.

Every server runs as a real process on a loopback port, pinned with `taskset` to its own
CPU(s); wrk runs pinned to another. All servers start first and stay up; then each round runs
every scenario against every variant in turn, the variants' order rotated each round, so a
noisy neighbour slows all of them alike (A B C, B C A, ...). The table shows each variant's
medians over the rounds.

    python -m bench.run --help
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import subprocess
import sys
import tempfile
import uuid
from contextlib import ExitStack
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import baseline
from bench.fill import write_users_file
from bench.report import Measurement, summarize, table, write_chart, write_json
from bench.servers import (
    API_KEY,
    PROJECT_SCENARIOS,
    ROOT,
    Data,
    Server,
    Variant,
    all_variants,
    check_answers,
    pinning,
    postgres_port,
    postgres_reachable,
    running,
)
from users_api.settings import Settings

WRK_SCRIPTS = Path(__file__).resolve().parent / "wrk"
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_VARIANTS = "*-1w,fastapi,stock-connexion,seed-flask,floor-*"
DEFAULT_SCENARIOS = "get,put,list,post"
FULL_SCENARIOS = ",".join(PROJECT_SCENARIOS)
DEFAULTS: dict[str, Any] = {
    "variants": DEFAULT_VARIANTS,
    "scenarios": DEFAULT_SCENARIOS,
    "connections": [16],
    "duration": 5,
    "rounds": 3,
    "warmup": 2,
}
QUICK: dict[str, Any] = {"duration": 1, "rounds": 1, "warmup": 1}
FULL: dict[str, Any] = {"variants": "*", "scenarios": FULL_SCENARIOS, "connections": [16, 64]}


def main(argv: list[str] | None = None) -> int:
    options = _options(argv)
    variants = [v for v in all_variants() if _chosen(v.name, options.variants)]
    scenarios = options.scenarios.split(",")
    unknown = set(scenarios) - set(PROJECT_SCENARIOS)
    if unknown or not variants:
        _say(f"no such scenario: {', '.join(sorted(unknown))}" if unknown else "no variant chosen")
        return 2
    if any(v.store == "postgres" for v in variants) and not postgres_reachable(
        options.postgres_url
    ):
        _say(f"PostgreSQL is not reachable at {options.postgres_url}: its variants are skipped")
        variants = [v for v in variants if v.store != "postgres"]
    if options.baseline:
        variants += baseline.twins(options.baseline, variants)
    _say(_plan(options, variants, scenarios))

    RESULTS.mkdir(exist_ok=True)
    started = datetime.now().astimezone()
    with tempfile.TemporaryDirectory(prefix="users-bench-") as workdir, ExitStack() as stack:
        users_file = Path(workdir) / "users.jsonl"
        write_users_file(users_file, options.users)
        data = Data(Path(workdir), users_file, options.postgres_url, options.pool_size)
        stack.callback(data.drop)
        servers = []
        for variant in variants:
            _say(f"starting {variant.name} with {options.users:,} users")
            servers.append(stack.enter_context(running(variant, data, Path(workdir))))
        for server in servers:
            check_answers(server, [s for s in scenarios if s in server.variant.scenarios])
        measurements = _rounds(servers, scenarios, options, data)

    rows = summarize(measurements, scenarios, [v.name for v in variants])
    about = _about(started, options, variants, scenarios)
    text = table(rows)
    sys.stdout.write(f"{_headline(about)}\n\n{text}\n\n")
    stamp = started.strftime("%Y%m%d-%H%M%S")
    json_path, chart_path = RESULTS / f"{stamp}.json", RESULTS / f"{stamp}.png"
    write_json(json_path, about | {"table": text}, measurements, rows)
    write_chart(chart_path, rows, _headline(about))
    sys.stdout.write(f"Wrote {json_path.relative_to(ROOT)} and {chart_path.relative_to(ROOT)}\n")
    return 0


def _rounds(
    servers: list[Server], scenarios: list[str], options: argparse.Namespace, data: Data
) -> list[Measurement]:
    """A warm-up of each scenario on each server, then the rounds, the servers' order
    rotated each round."""
    _say(f"warming up, {options.warmup} s per scenario")
    for server in servers:
        for scenario in scenarios:
            if scenario in server.variant.scenarios:
                _measure(server, scenario, options.connections[0], options.warmup, 0, data)
    measurements = []
    for round_ in range(1, options.rounds + 1):
        for connections in options.connections:
            for scenario in scenarios:
                taking_part = [s for s in servers if scenario in s.variant.scenarios]
                shift = (round_ - 1) % len(taking_part)
                for server in taking_part[shift:] + taking_part[:shift]:
                    measurement = _measure(
                        server, scenario, connections, options.duration, round_, data
                    )
                    measurements.append(measurement)
                    _say(
                        f"round {round_}/{options.rounds} {scenario} c{connections} "
                        f"{server.variant.name}: {measurement.requests_per_s:.0f} req/s, "
                        f"p99 {measurement.p99_ms:.1f} ms, errors {measurement.errors}"
                        + (
                            f", {measurement.round_trips:.2f} round trips/request"
                            if measurement.round_trips is not None
                            else ""
                        )
                    )
    return measurements


def _measure(
    server: Server, scenario: str, connections: int, duration: int, round_: int, data: Data
) -> Measurement:
    """One wrk run; the server tree's CPU time is read just before and just after it."""
    load_cpu = pinning(server.variant.workers).load
    command = [
        "taskset",
        "-c",
        load_cpu,
        "wrk",
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{duration}s",
        "--timeout",
        "10s",
        "--script",
        f"{scenario}.lua",
        server.url,
        "--",
        str(data.users),
        API_KEY,
        uuid.uuid4().hex[:8],
    ]
    on_postgres = server.variant.store == "postgres"
    database = postgres_port(data.postgres_url)
    replies_before = server.postgres_replies(database) if on_postgres else {}
    cpu_before = server.cpu_seconds()
    output = subprocess.run(
        command, cwd=WRK_SCRIPTS, capture_output=True, text=True, check=True
    ).stdout
    cpu_used = server.cpu_seconds() - cpu_before
    replies = server.postgres_replies(database) if on_postgres else {}
    result = _wrk_result(output)
    requests = max(result["requests"], 1)
    # A connection opened during the run counts from nothing: its start-up is in the count.
    round_trips = sum(count - replies_before.get(port, 0) for port, count in replies.items())
    return Measurement(
        variant=server.variant.name,
        scenario=scenario,
        connections=connections,
        round=round_,
        requests=result["requests"],
        requests_per_s=result["requests"] / (result["duration_us"] / 1e6),
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        cpu_us_per_request=cpu_used * 1e6 / requests,
        rss_mb=server.rss_bytes() / 2**20,
        errors=sum(result["errors"].values()),
        round_trips=round_trips / requests if on_postgres else None,
    )


def _wrk_result(output: str) -> dict[str, Any]:
    """The JSON line bench/wrk/common.lua's `done` prints."""
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return result
    raise RuntimeError(f"wrk printed no result:\n{output}")


def _about(
    started: datetime, options: argparse.Namespace, variants: list[Variant], scenarios: list[str]
) -> dict[str, Any]:
    """What was measured, on what, and how, for the JSON and the headline."""
    return {
        "started": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(),
        },
        "versions": {
            name: version(name)
            for name in ("connexion", "flask", "fastapi", "uvicorn", "gunicorn", "starlette")
        },
        "options": {
            "users": options.users,
            "duration_s": options.duration,
            "rounds": options.rounds,
            "warmup_s": options.warmup,
            "connections": options.connections,
            "scenarios": scenarios,
        },
        "pinning": {
            f"{workers} worker(s)": {
                "server_cpus": pin.server,
                "wrk_cpu": pin.load,
                "shared": pin.shared,
            }
            for workers in sorted({v.workers for v in variants})
            if (pin := pinning(workers))
        },
    }


def _headline(about: dict[str, Any]) -> str:
    options, machine = about["options"], about["machine"]
    pins = "; ".join(
        f"{workers}: server on CPU {pin['server_cpus']}, wrk on CPU {pin['wrk_cpu']}"
        + (" (shared)" if pin["shared"] else "")
        for workers, pin in about["pinning"].items()
    )
    return (
        f"users-api bench {about['started']}: {options['users']:,} users, "
        f"{options['rounds']} round(s) x {options['duration_s']} s, medians; "
        f"{machine['cpus']} CPUs; {pins}"
    )


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _plan(options: argparse.Namespace, variants: list[Variant], scenarios: list[str]) -> str:
    runs = sum(len([s for s in scenarios if s in variant.scenarios]) for variant in variants)
    seconds = runs * (
        options.rounds * len(options.connections) * (options.duration + 1) + options.warmup + 1
    )
    return (
        f"{len(variants)} variants ({', '.join(v.name for v in variants)}), "
        f"{runs} variant-scenarios x {len(options.connections)} connection count(s) x "
        f"{options.rounds} round(s) x {options.duration} s: about {seconds / 60:.0f} min"
    )


def _chosen(name: str, patterns: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns.split(","))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.split("\n\n")[0],
        epilog="variants: " + ", ".join(v.name for v in all_variants()),
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 1 round of 1 s, 1 s warm-up"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"every variant, scenario ({FULL_SCENARIOS}) and 16 and 64 connections; hours",
    )
    parser.add_argument(
        "--variants",
        help=f"comma-separated names or patterns (default: {DEFAULT_VARIANTS})",
    )
    parser.add_argument("--scenarios", help=f"comma-separated (default: {DEFAULT_SCENARIOS})")
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run each chosen project variant as the commit REF built it, side by side",
    )
    parser.add_argument(
        "--connections",
        type=lambda text: [int(n) for n in text.split(",")],
        help="comma-separated connection counts (default: 16)",
    )
    parser.add_argument("--duration", type=int, help="seconds per run (default: 5)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default: 3)")
    parser.add_argument("--warmup", type=int, help="seconds per scenario before round 1 (2)")
    parser.add_argument(
        "--users", type=int, default=1000, help="users each server starts with (1000)"
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=Settings().pool_size,
        help="database connections per process, the service's and the PostgreSQL peers' "
        "(default: the service's, %(default)s)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "USERS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="a database the PostgreSQL variants get a schema in, dropped at the end "
        "(USERS_BENCH_POSTGRES_URL)",
    )
    return parser


def _options(argv: list[str] | None) -> argparse.Namespace:
    """The command line, its gaps filled from --quick or --full, then from the defaults."""
    options = _parser().parse_args(argv)
    presets = [QUICK] if options.quick else []
    presets += [FULL] if options.full else []
    for name, default in DEFAULTS.items():
        if getattr(options, name) is None:
            chosen = next((preset[name] for preset in presets if name in preset), default)
            setattr(options, name, chosen)
    return options


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
