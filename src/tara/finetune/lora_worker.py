"""The training process of one LoRA job: ``python -m tara.finetune.lora_worker JOB_DIR``.

Started by :class:`~tara.finetune.backend_lora.LoraBackend` with
``--detach`` (it forks into its own session, so a cancel can stop it and
everything it forked, and its starter keeps no child behind); nothing
connects them afterwards: the job's directory is the whole interface. It holds
the job's worker lock from its parent for as long as it lives, trains the
adapter (:func:`~tara.finetune.lora_train.train_adapter`), loads it into the
vLLM server (:mod:`tara.finetune.lora_serving`, retrying a server that is
down for up to ``lora.load_timeout``), and only then marks the job
succeeded with the served model name. A job cancelled meanwhile stays
cancelled (and an adapter loaded in that moment is unloaded again).

The server's API key arrives in the environment (``KEY_VARIABLE``), never in
the job's files.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import orjson
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from tara.finetune.backend import Hyperparameters
from tara.finetune.lora_config import LoraSettings
from tara.finetune.lora_jobs import JobDir
from tara.finetune.lora_serving import AdapterServerError, load_adapter, unload_adapter
from tara.finetune.lora_train import TrainingError, TrainSpec, train_adapter

KEY_VARIABLE = "TARA_LORA_SERVER_API_KEY"

log = logging.getLogger("tara.finetune.lora_worker")


def spec_from_json(data: dict[str, Any]) -> tuple[TrainSpec, dict[str, Any]]:
    """The training spec and the serving part (``adapter_name``, ``server_url``,
    ``server_adapter_path``) of a ``spec.json``."""
    hp = data["hyperparameters"]
    spec = TrainSpec(
        base_model=data["base_model"],
        train_file=Path(data["train_file"]),
        validation_file=Path(data["validation_file"]) if data.get("validation_file") else None,
        hyperparameters=Hyperparameters(
            n_epochs=int(hp["n_epochs"]),
            batch_size=int(hp["batch_size"]),
            learning_rate_multiplier=float(hp["learning_rate_multiplier"]),
        ),
        lora=LoraSettings.model_validate(data["lora"]),
        adapter_dir=Path(data["adapter_dir"]),
    )
    return spec, data["serving"]


def _fail(job: JobDir, code: str, message: str) -> None:
    moved, _ = job.move("failed", error={"code": code, "message": message})
    if moved:
        job.event(f"Fine-tuning job failed: {message}", level="error")


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, AdapterServerError) and exc.transient


async def _load(serving: dict[str, Any], api_key: str | None, give_up_after: float) -> None:
    retrying = AsyncRetrying(
        stop=stop_after_delay(give_up_after),
        wait=wait_exponential(multiplier=1, max=30),
        retry=retry_if_exception(_transient),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            await load_adapter(
                serving["server_url"],
                api_key,
                serving["adapter_name"],
                serving["server_adapter_path"],
            )


def run(job: JobDir, api_key: str | None) -> int:
    """Train, load, mark the job; the exit code is 0 unless it failed."""
    spec, serving = spec_from_json(orjson.loads(job.spec_path.read_bytes()))

    if not job.move("running", pid=os.getpid())[0]:
        return 0  # cancelled before it started

    def report(message: str, data: dict[str, Any] | None) -> None:
        job.event(message, data=data)

    try:
        result = train_adapter(spec, report)
    except TrainingError as exc:
        _fail(job, "training_failed", str(exc))
        return 1
    except Exception as exc:  # the process boundary: anything else fails the job, with a trace
        traceback.print_exc()
        _fail(job, "training_failed", f"{type(exc).__name__}: {exc}")
        return 1
    name = serving["adapter_name"]
    job.event(
        f"Adapter saved to {spec.adapter_dir}; loading it into {serving['server_url']} as {name}"
    )
    try:
        asyncio.run(_load(serving, api_key, spec.lora.load_timeout))
    except AdapterServerError as exc:
        _fail(job, "adapter_load_failed", f"{exc}; the adapter stays at {spec.adapter_dir}")
        return 1

    succeeded, _ = job.move(
        "succeeded", fine_tuned_model=name, trained_tokens=result.trained_tokens
    )
    if not succeeded:
        # Cancelled while the adapter was loading: it must not stay servable.
        try:
            asyncio.run(unload_adapter(serving["server_url"], api_key, name))
        except AdapterServerError as exc:
            log.warning("job cancelled, but adapter %s is still loaded: %s", name, exc)
        return 0
    job.event(f"New fine-tuned model created: {name}")
    job.event("The job has successfully completed")
    return 0


def detach() -> None:
    """Fork; the parent exits at once, the child leads a new session.

    The process that started this one only waits for that exit, so it
    keeps no child behind (no zombie, nothing to reap), and the worker's pid
    is its process group's id: a cancel stops it and everything it forked.
    """
    if os.fork() > 0:
        os._exit(0)
    os.setsid()


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``--lock-fd`` is the inherited descriptor that holds the worker lock."""
    parser = argparse.ArgumentParser(prog="python -m tara.finetune.lora_worker")
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("--lock-fd", type=int, required=True)
    parser.add_argument("--detach", action="store_true", help="fork into a new session first")
    args = parser.parse_args(argv)
    if args.detach:
        detach()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.fstat(args.lock_fd)  # kept open until exit: the lock says this process lives
    return run(JobDir(args.job_dir), os.environ.get(KEY_VARIABLE) or None)


if __name__ == "__main__":
    sys.exit(main())
