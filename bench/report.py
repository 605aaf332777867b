"""Medians of the rounds, as a table, as JSON, and as a chart."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.servers import PEERS


@dataclass(frozen=True)
class Measurement:
    """One wrk run against one server."""

    variant: str
    scenario: str
    connections: int
    round: int
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    rss_mb: float
    errors: int
    """Responses other than 2xx or 3xx, plus connect, read, write and timeout errors."""
    round_trips: float | None = None
    """Round trips to PostgreSQL per request, for a server on it: the replies its connections
    received during the run (`Server.postgres_replies`) over the requests."""


@dataclass(frozen=True)
class Row:
    """The medians of one variant's rounds in one scenario at one connection count."""

    scenario: str
    connections: int
    variant: str
    rounds: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    rss_mb: float
    errors: int
    ratios: dict[str, float]
    """Requests/s over each peer's on the peers' scenarios, for every variant but the peers its
    table compares with (a floor too), and over its own flavour's on the memory store
    (`memory`), for a variant on PostgreSQL."""
    round_trips: float | None = None


RATIO_COLUMNS = {
    "fastapi": "/FastAPI",
    "stock-connexion": "/stock",
    "seed-flask": "/seed",
    "fastapi-asyncpg": "/FA+apg",
    "flask-psycopg": "/Fl+pg",
    "memory": "/memory",
}


def summarize(
    measurements: list[Measurement], scenarios: list[str], variants: list[str]
) -> list[Row]:
    """One row per scenario, connection count and variant, in that order."""
    groups: dict[tuple[str, int, str], list[Measurement]] = defaultdict(list)
    for measurement in measurements:
        key = (measurement.scenario, measurement.connections, measurement.variant)
        groups[key].append(measurement)

    def median(key: tuple[str, int, str], field: str) -> float:
        return float(statistics.median(getattr(m, field) for m in groups[key]))

    rows = []
    for key in sorted(groups, key=lambda k: (scenarios.index(k[0]), k[1], variants.index(k[2]))):
        scenario, connections, variant = key
        throughput = median(key, "requests_per_s")
        ratios = {
            peer: throughput / median(peer_key, "requests_per_s")
            for peer in PEERS
            if variant not in RATIO_COLUMNS
            and (peer_key := (scenario, connections, peer)) in groups
        }
        flavour, _, workers = variant.partition("-postgres-")
        memory_key = (scenario, connections, f"{flavour}-memory-1w")
        if workers and memory_key in groups:
            ratios["memory"] = throughput / median(memory_key, "requests_per_s")
        trips = [m.round_trips for m in groups[key] if m.round_trips is not None]
        rows.append(
            Row(
                scenario=scenario,
                connections=connections,
                variant=variant,
                rounds=len(groups[key]),
                requests_per_s=throughput,
                p50_ms=median(key, "p50_ms"),
                p99_ms=median(key, "p99_ms"),
                cpu_us_per_request=median(key, "cpu_us_per_request"),
                rss_mb=median(key, "rss_mb"),
                errors=sum(m.errors for m in groups[key]),
                ratios=ratios,
                round_trips=statistics.median(trips) if trips else None,
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    header = (
        f"{'scenario':<10} {'conns':>5} {'variant':<24} {'req/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'CPU us/req':>10} {'RSS MB':>7} {'RT/req':>6}"
        + "".join(f" {label:>8}" for label in RATIO_COLUMNS.values())
        + f" {'errors':>7}"
    )
    lines = [header, "-" * len(header)]
    previous = None
    for row in rows:
        if previous is not None and (row.scenario, row.connections) != previous:
            lines.append("")
        previous = (row.scenario, row.connections)
        ratios = "".join(
            f" {row.ratios[peer]:>7.2f}x" if peer in row.ratios else f" {'':>8}"
            for peer in RATIO_COLUMNS
        )
        trips = f"{row.round_trips:>6.2f}" if row.round_trips is not None else f"{'':>6}"
        lines.append(
            f"{row.scenario:<10} {row.connections:>5} {row.variant:<24} "
            f"{row.requests_per_s:>8.0f} {row.p50_ms:>7.2f} {row.p99_ms:>7.2f} "
            f"{row.cpu_us_per_request:>10.0f} {row.rss_mb:>7.0f} {trips}{ratios} {row.errors:>7}"
        )
    return "\n".join(lines)


def write_json(
    path: Path, about: dict[str, Any], measurements: list[Measurement], rows: list[Row]
) -> None:
    document = {
        **about,
        "summary": [asdict(row) for row in rows],
        "measurements": [asdict(m) for m in measurements],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def write_chart(path: Path, rows: list[Row], title: str) -> None:
    """Throughput and p99 per variant: one pair of panels per connection count, a group of
    bars per scenario."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    connections = sorted({row.connections for row in rows})
    scenarios = list(dict.fromkeys(row.scenario for row in rows))
    variants = list(dict.fromkeys(row.variant for row in rows))
    by_key = {(row.scenario, row.connections, row.variant): row for row in rows}
    figure, axes = plt.subplots(
        2, len(connections), figsize=(7 + 4 * len(scenarios), 9), squeeze=False
    )
    width = 0.8 / len(variants)
    colours = plt.get_cmap("tab20")
    for column, count in enumerate(connections):
        for panel, (field, label) in enumerate(
            [("requests_per_s", "requests/s (higher is better)"), ("p99_ms", "p99 ms (lower)")]
        ):
            ax = axes[panel][column]
            for index, variant in enumerate(variants):
                positions, heights = [], []
                for position, scenario in enumerate(scenarios):
                    row = by_key.get((scenario, count, variant))
                    if row is not None:
                        positions.append(position + (index - len(variants) / 2 + 0.5) * width)
                        heights.append(getattr(row, field))
                ax.bar(positions, heights, width, label=variant, color=colours(index % 20))
            ax.set_xticks(range(len(scenarios)), scenarios)
            ax.set_ylabel(label)
            ax.set_title(f"{count} connections")
            ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
