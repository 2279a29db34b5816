"""Issue 16's one table: every benchmark point, the gateway beside the bare proxy.

Benchmarks write their points to ``bench/results/<name>.json``, each a list
of rows ``{"point", "gateway", "bare", "goal", "holds", "measured"}``
(``bare`` may be empty; ``measured`` is when the benchmark wrote the row, in
UTC, :func:`write_results`); this prints them all as one Markdown table,
with the machine it runs on and when each file was measured (a file's
modification time if its rows carry no date: a checkout resets those).
``--run`` first runs ``bench/bench_loop.py`` (tail latency, event-loop lag,
streaming CPU, open streams, overhead histogram; about 15 minutes), which
rewrites ``bench/results/loop.json``; the other files come from their own
benchmarks.

Run: ``.venv/bin/python bench/table.py`` (``--run`` to measure first).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU's model name, as the kernel reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line naming the machine: cores, CPU, Python, kernel."""
    return (
        f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), Linux {platform.release()}"
    )


def load_rows(results: Path) -> list[tuple[str, dict[str, object]]]:
    """Every row of every results file, with the file's name."""
    rows = []
    for path in sorted(results.glob("*.json")):
        for item in json.loads(path.read_text(encoding="utf-8")):
            rows.append((path.stem, item))
    return rows


MEASURED = "%Y-%m-%dT%H:%M:%SZ"
"""How a row's ``measured`` time is written (UTC)."""


def write_results(path: Path, rows: list[dict[str, object]]) -> None:
    """Write a benchmark's rows to ``path``, each dated now."""
    now = datetime.datetime.now(datetime.UTC).strftime(MEASURED)
    path.parent.mkdir(parents=True, exist_ok=True)
    dated = [{**r, "measured": now} for r in rows]
    path.write_text(json.dumps(dated, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _written(path: Path) -> datetime.datetime:
    """When the file's rows were measured (the latest row's date), else its mtime."""
    dates = [
        datetime.datetime.strptime(str(r["measured"]), MEASURED).replace(tzinfo=datetime.UTC)
        for r in json.loads(path.read_text(encoding="utf-8"))
        if r.get("measured")
    ]
    if dates:
        return max(dates)
    return datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(results: Path) -> str:
    """The Markdown table, with the machine and the files' dates above it."""
    rows = load_rows(results)
    stamps = ", ".join(
        f"{p.name} {_written(p):%Y-%m-%d %H:%M} UTC" for p in sorted(results.glob("*.json"))
    )
    held = sum(1 for _, r in rows if r.get("holds"))
    lines = [
        f"Machine: {machine()}",
        f"Results: {stamps or 'none yet'}",
        "",
        "| from | point | gateway | bare proxy | goal | holds |",
        "|---|---|---|---|---|---|",
    ]
    for source, r in rows:
        holds = "yes" if r.get("holds") else "**no**"
        cells = [source, r["point"], r["gateway"], r.get("bare", ""), r["goal"], holds]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", f"{held} of {len(rows)} points hold."]
    return "\n".join(lines)


def main() -> int:
    """Print the table (after running the loop benchmark with ``--run``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", action="store_true", help="run bench/bench_loop.py first")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON files are")
    args = parser.parse_args()
    if args.run:
        script = Path(__file__).resolve().parent / "bench_loop.py"
        subprocess.run([sys.executable, str(script)], check=True)
    print(render(args.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
