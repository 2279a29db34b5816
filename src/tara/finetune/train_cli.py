"""``tara finetune start | status | cancel``: run a training job on a prepared dataset.

Each command takes the dataset directory (default ``finetune.output_dir``);
``status`` and ``cancel`` also take ``--job ID``. ``--json`` prints one JSON
document for scripts. ``status --follow`` watches the job every
``finetune.poll_interval`` seconds with a progress bar (steps, trained
tokens, training and validation loss) until it ends. Exit codes: 0 done,
1 the backend refused or failed (or a followed job did not succeed, or a
failed run blocks ``start`` without ``--force``), 2 bad arguments or dataset.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar

from tara.finetune.backend import BackendError, Job, JobEvent, TrainingBackend, open_backend
from tara.finetune.runs import RunRecord, RunRegistry
from tara.finetune.train import (
    META_DATASET,
    Dataset,
    load_dataset,
    progress,
    record_job,
    run_key,
    start_run,
)
from tara.loops import poll
from tara.settings import Settings

EVENTS_SHOWN = 100


class UsageError(Exception):
    """Bad arguments or dataset (exit code 2)."""


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _dataset(args: argparse.Namespace, settings: Settings) -> Dataset:
    try:
        return load_dataset(args.dataset or settings.finetune.output_dir)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _registry(settings: Settings, dataset_dir: Path) -> RunRegistry:
    return RunRegistry(settings.finetune.state_dir or dataset_dir)


def _run(
    args: argparse.Namespace,
    settings: Settings,
    body: Callable[[TrainingBackend], Awaitable[int]],
) -> int:
    name = f"tara finetune {args.finetune_command}"
    try:
        backend = open_backend(settings)
    except ValueError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2

    async def main() -> int:
        try:
            return await body(backend)
        finally:
            await backend.aclose()

    try:
        return asyncio.run(main())
    except UsageError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except (BackendError, ValueError, OSError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1


def start_command(args: argparse.Namespace, settings: Settings) -> int:
    """Upload the dataset and create its job, unless the run already has one."""

    async def body(backend: TrainingBackend) -> int:
        dataset = _dataset(args, settings)
        registry = _registry(settings, dataset.directory)
        with registry.locked():
            outcome = await start_run(
                backend, dataset, settings.finetune, registry, force=args.force
            )
        job = outcome.job
        if args.json:
            _print_json(
                {
                    "action": outcome.action,
                    "run": outcome.record.as_json(),
                    "job": job.as_json() if job else None,
                }
            )
        elif job is not None and outcome.action == "created":
            print(f"created job {job.id} on {job.model} (run {outcome.record.run_key})")
            print(f"follow it with: tara finetune status {dataset.directory} --follow")
        elif job is not None and outcome.action == "reused":
            print(f"job {job.id} already exists for this run ({job.status}); not creating another")
        elif job is not None:
            why = f": {job.error.message}" if job.error else ""
            print(f"the run's last job {job.id} {job.status}{why}")
            print("run again with --force to start a new job on the same data")
        return 1 if outcome.action == "blocked" else 0

    return _run(args, settings, body)


async def _target(
    args: argparse.Namespace, settings: Settings, backend: TrainingBackend
) -> tuple[str, RunRegistry | None, RunRecord | None]:
    """The job to look at: ``--job``, else the dataset's run (local registry, then backend)."""
    if args.job:
        return args.job, None, None
    dataset = _dataset(args, settings)
    registry = _registry(settings, dataset.directory)
    record = registry.get(run_key(dataset.hash, settings.finetune)) or registry.latest(dataset.hash)
    if record is not None and record.job_id is not None:
        return record.job_id, registry, record
    job = await backend.find_job({META_DATASET: dataset.hash})
    if job is None:
        msg = f"no fine-tuning job for {dataset.directory}: run `tara finetune start` first"
        raise UsageError(msg)
    return job.id, None, None


def _remember(registry: RunRegistry | None, record: RunRecord | None, job: Job) -> None:
    if registry is not None and record is not None:
        with registry.locked():
            registry.put(record_job(record, job, time.time()))


def _report(job: Job, events: list[JobEvent], record: RunRecord | None) -> dict[str, Any]:
    return {
        "job": job.as_json(),
        "progress": progress(job, events).as_json(),
        "events": [e.as_json() for e in events[-EVENTS_SHOWN:]],
        "run": record.as_json() if record else None,
    }


def _summary(console: Console, job: Job, events: list[JobEvent]) -> None:
    p = progress(job, events)
    console.print(f"job {job.id} ({job.model}): [bold]{job.status}[/bold]")
    if p.total_steps is not None:
        console.print(
            f"step {p.step}/{p.total_steps}  trained tokens {p.trained_tokens or 0:,}  "
            f"training loss {p.train_loss}  validation loss {p.valid_loss}"
        )
    if job.fine_tuned_model:
        console.print(f"fine-tuned model: {job.fine_tuned_model}")
    if job.error:
        console.print(f"error ({job.error.code}): {job.error.message}")


def _describe(job: Job, events: list[JobEvent]) -> str:
    p = progress(job, events)
    losses = f"loss {p.train_loss} / val {p.valid_loss}" if p.train_loss is not None else ""
    return f"{job.status:<16} tokens {p.trained_tokens or 0:>10,}  {losses}"


async def _follow(
    backend: TrainingBackend, job_id: str, interval: float, console: Console | None
) -> tuple[Job, list[JobEvent]]:
    """Poll until the job ends; draw a bar on ``console`` (None: quietly)."""
    history: dict[str, JobEvent] = {}
    bar = Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    )
    with bar:
        task = bar.add_task("starting", total=None)
        async for _ in poll(interval):
            job = await backend.get_job(job_id)
            for event in await backend.list_events(job_id, EVENTS_SHOWN):
                if event.id not in history and console is not None and event.type != "metrics":
                    bar.console.print(f"[dim]{event.level}[/dim] {event.message}")
                history.setdefault(event.id, event)
            events = list(history.values())
            p = progress(job, events)
            bar.update(task, description=_describe(job, events), total=p.total_steps)
            bar.update(task, completed=p.step or 0)
            if job.finished:
                return job, events
    raise AssertionError("unreachable: poll never ends")  # pragma: no cover


def status_command(args: argparse.Namespace, settings: Settings) -> int:
    """Show the job (``--follow``: until it ends) as text or ``--json``."""

    async def body(backend: TrainingBackend) -> int:
        job_id, registry, record = await _target(args, settings, backend)
        console = Console(file=sys.stdout, highlight=False)
        if args.follow:
            interval = settings.finetune.poll_interval
            job, events = await _follow(backend, job_id, interval, None if args.json else console)
        else:
            job = await backend.get_job(job_id)
            events = await backend.list_events(job_id, EVENTS_SHOWN)
        _remember(registry, record, job)
        if args.json:
            _print_json(_report(job, events, record))
        else:
            if not args.follow:
                for event in events[-5:]:
                    console.print(f"[dim]{event.level}[/dim] {event.message}")
            _summary(console, job, events)
        return 0 if not args.follow or job.status == "succeeded" else 1

    return _run(args, settings, body)


def cancel_command(args: argparse.Namespace, settings: Settings) -> int:
    """Cancel the job of the dataset's run (or ``--job``)."""

    async def body(backend: TrainingBackend) -> int:
        job_id, registry, record = await _target(args, settings, backend)
        job = await backend.cancel_job(job_id)
        _remember(registry, record, job)
        if args.json:
            _print_json({"job": job.as_json(), "run": record.as_json() if record else None})
        else:
            print(f"job {job.id}: {job.status}")
        return 0

    return _run(args, settings, body)
