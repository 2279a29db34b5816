"""CPU cost of the SSE stream tap alone, per event, in the reads an upstream really makes.

The tap frames and observes every streamed event on the gateway's hot path.
This feeds a recorded sandbox stream (``tests/gateway/streams``) to fresh taps
in three shapes: one event per read (a paced upstream), the whole answer in
one read (an unpaced one), and CRLF framing cut between CR and LF on every
event. It prints the best of several runs in nanoseconds per event (CPU
time; on a shared machine compare runs made close together, or count
instructions with ``bench_instructions.py --stream``).

Run: ``.venv/bin/python bench/bench_sse.py``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tara.gateway.sse import StreamTap

STREAM = Path(__file__).resolve().parents[1] / "tests" / "gateway" / "streams"


def shapes(stream: bytes) -> dict[str, list[bytes]]:
    """The reads of each shape."""
    events = [e + b"\n\n" for e in stream.split(b"\n\n") if e]
    crlf = stream.replace(b"\n", b"\r\n")
    cuts = [i + 3 for i in range(len(crlf)) if crlf.startswith(b"\r\n\r\n", i)]
    split = [crlf[a:b] for a, b in zip([0, *cuts], [*cuts, len(crlf)], strict=True)]
    return {"event per read": events, "one read": [stream], "CRLF split at CR": split}


def per_event(reads: list[bytes], events: int, rounds: int) -> float:
    """Best nanoseconds per event over ``rounds`` runs of 200 streams each."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time_ns()
        for _ in range(200):
            tap = StreamTap(drop_usage_chunk=True)
            for read in reads:
                tap.feed(read)
        best = min(best, (time.process_time_ns() - start) / 200 / events)
    return best


def main() -> int:
    """Print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15, help="runs; the best counts (15)")
    args = parser.parse_args()
    stream = (STREAM / "sandbox-hindi-usage.sse").read_bytes()
    events = stream.count(b"\n\n")
    print(f"| reads ({events} events, usage dropped) | ns per event |")
    print("|---|---|")
    for name, reads in shapes(stream).items():
        print(f"| {name} | {per_event(reads, events, args.rounds):,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
