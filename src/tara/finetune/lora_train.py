"""Training one LoRA adapter with TRL's SFT trainer and PEFT, on the chat JSONL ``prepare`` wrote.

The decisions are pure and importable without the training libraries:
:func:`training_plan` maps the job's hyperparameters (the ones the OpenAI
backend sends) onto the trainer's, and :func:`prompt_completion` turns a
chat example into TRL's conversational prompt–completion form, so the loss
is taken on the answer only and the base model's own chat template frames
it. :func:`train_adapter` is the part that needs ``tara-gateway[train]``
(PyTorch, transformers, PEFT, TRL, datasets); it runs in the training
process only (:mod:`tara.finetune.lora_worker`), never in the gateway or
the controller.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tara.finetune.backend import Hyperparameters
from tara.finetune.lora_config import LoraSettings

Report = Callable[[str, dict[str, Any] | None], None]
"""Where progress goes: a message, and metric data (step, losses, tokens) or None."""


class TrainingError(Exception):
    """The data, the base model or the machine cannot train this job; the message says why."""


@dataclass(frozen=True, slots=True)
class TrainingPlan:
    """The trainer's settings for one job."""

    epochs: int
    micro_batch_size: int
    gradient_accumulation_steps: int
    learning_rate: float

    @property
    def batch_size(self) -> int:
        """Examples per optimiser step."""
        return self.micro_batch_size * self.gradient_accumulation_steps


def training_plan(hp: Hyperparameters, lora: LoraSettings) -> TrainingPlan:
    """Epochs as asked; the batch as the largest micro batch up to ``lora.micro_batch_size``
    that divides it, times accumulation steps (so the optimiser sees exactly
    ``batch_size`` examples per step); learning rate = multiplier × ``base_learning_rate``."""
    micro = max(
        d for d in range(1, min(hp.batch_size, lora.micro_batch_size) + 1) if not hp.batch_size % d
    )
    return TrainingPlan(
        epochs=hp.n_epochs,
        micro_batch_size=micro,
        gradient_accumulation_steps=hp.batch_size // micro,
        learning_rate=hp.learning_rate_multiplier * lora.base_learning_rate,
    )


def total_steps(plan: TrainingPlan, examples: int) -> int:
    """Optimiser steps for ``examples`` (a short last batch still makes a step)."""
    return max(1, math.ceil(examples / plan.batch_size)) * plan.epochs


def prompt_completion(example: Any, where: str) -> dict[str, list[dict[str, str]]]:
    """``{"messages": [...]}`` split before the last message, which must be the answer."""
    messages = example.get("messages") if isinstance(example, dict) else None
    if not isinstance(messages, list) or not messages:
        msg = f"{where}: no 'messages' list"
        raise TrainingError(msg)
    for message in messages:
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            msg = f"{where}: every message needs a string 'role' and 'content'"
            raise TrainingError(msg)
    if messages[-1]["role"] != "assistant" or len(messages) < 2:
        msg = f"{where}: the last message must be the assistant's answer, after a prompt"
        raise TrainingError(msg)
    keep = [{"role": m["role"], "content": m["content"]} for m in messages]
    return {"prompt": keep[:-1], "completion": keep[-1:]}


def read_examples(path: Path) -> list[dict[str, list[dict[str, str]]]]:
    """Every example of a chat JSONL file as prompt–completion; TrainingError names a bad line."""
    examples = []
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                msg = f"{where}: not JSON ({exc})"
                raise TrainingError(msg) from exc
            examples.append(prompt_completion(data, where))
    if not examples:
        msg = f"{path.name} holds no examples"
        raise TrainingError(msg)
    return examples


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """What to train: the base model, the data, the hyperparameters and where the adapter goes."""

    base_model: str
    train_file: Path
    validation_file: Path | None
    hyperparameters: Hyperparameters
    lora: LoraSettings
    adapter_dir: Path


@dataclass(frozen=True, slots=True)
class TrainResult:
    """How training ended."""

    steps: int
    trained_tokens: int
    train_loss: float | None
    valid_loss: float | None


def _device(setting: str) -> tuple[bool, bool]:
    """``(use the GPU, in bf16)`` for ``lora.device``."""
    import torch

    cuda = bool(torch.cuda.is_available())
    if setting == "cuda" and not cuda:
        msg = "finetune.lora.device is 'cuda' but PyTorch sees no GPU"
        raise TrainingError(msg)
    use_gpu = cuda and setting != "cpu"
    return use_gpu, use_gpu and bool(torch.cuda.is_bf16_supported())


def _load_base(spec: TrainSpec, use_gpu: bool, bf16: bool) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.base_model, local_files_only=True)
        dtype = torch.bfloat16 if bf16 else torch.float16 if use_gpu else torch.float32
        model = AutoModelForCausalLM.from_pretrained(
            spec.base_model, local_files_only=True, dtype=dtype
        )
    except OSError as exc:
        msg = (
            f"cannot load base model {spec.base_model!r} from disk ({exc}); set "
            "finetune.base_model to a local directory or a model in the local Hugging Face cache"
        )
        raise TrainingError(msg) from exc
    if not tokenizer.chat_template:
        msg = f"the tokenizer of {spec.base_model!r} has no chat template: use a chat model"
        raise TrainingError(msg)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _progress_callback(report: Report, plan_steps: int) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):  # type: ignore[misc]
        """Turns the trainer's logs into progress events with the latest losses."""

        def __init__(self) -> None:
            self.train_loss: float | None = None
            self.valid_loss: float | None = None
            self.tokens = 0

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" not in logs and "eval_loss" not in logs:
                return
            if "loss" in logs:
                self.train_loss = round(float(logs["loss"]), 4)
                self.tokens = int(logs.get("num_tokens", self.tokens))
            if "eval_loss" in logs:
                self.valid_loss = round(float(logs["eval_loss"]), 4)
            step, total = int(state.global_step), int(state.max_steps or plan_steps)
            data = {
                "step": step,
                "total_steps": total,
                "train_loss": self.train_loss,
                "valid_loss": self.valid_loss,
                "trained_tokens": self.tokens,
            }
            message = f"Step {step}/{total}: training loss={self.train_loss}"
            report(f"{message}, validation loss={self.valid_loss}", data)

    return Progress()


def train_adapter(spec: TrainSpec, report: Report) -> TrainResult:
    """Train the adapter and save it (PEFT format) to ``spec.adapter_dir``, atomically."""
    # The data is checked before the slow imports, so a bad file fails at once.
    train = read_examples(spec.train_file)
    valid = read_examples(spec.validation_file) if spec.validation_file else None
    plan = training_plan(spec.hyperparameters, spec.lora)

    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    use_gpu, bf16 = _device(spec.lora.device)
    report(
        f"Training a rank-{spec.lora.rank} LoRA adapter on {spec.base_model} "
        f"({'GPU' if use_gpu else 'CPU'}): {len(train)} examples, {plan.epochs} epochs, "
        f"batch {plan.batch_size} ({plan.micro_batch_size}×{plan.gradient_accumulation_steps}), "
        f"learning rate {plan.learning_rate:g}",
        None,
    )
    model, tokenizer = _load_base(spec, use_gpu, bf16)
    lora = spec.lora
    work = spec.adapter_dir.with_name(f".{spec.adapter_dir.name}.training")
    args = SFTConfig(
        output_dir=str(work),
        num_train_epochs=plan.epochs,
        per_device_train_batch_size=plan.micro_batch_size,
        per_device_eval_batch_size=plan.micro_batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        learning_rate=plan.learning_rate,
        logging_steps=lora.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if valid else "no",
        eval_steps=lora.eval_steps,
        save_strategy="no",
        report_to="none",
        use_cpu=not use_gpu,
        bf16=bf16,
        fp16=use_gpu and not bf16,
        max_length=lora.max_length,
        seed=lora.seed,
        disable_tqdm=True,
    )
    callback = _progress_callback(report, total_steps(plan, len(train)))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(valid) if valid else None,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        ),
        callbacks=[callback],
    )
    if len(trainer.train_dataset) == 0:
        # The trainer drops examples whose answer is cut off entirely by max_length.
        msg = (
            f"no training example keeps any of its answer within finetune.lora.max_length "
            f"({lora.max_length} tokens): raise it"
        )
        raise TrainingError(msg)
    output = trainer.train()
    if valid and output.global_step % lora.eval_steps:
        trainer.evaluate()  # the validation loss of the final adapter
    # Saved beside the final name, then renamed: a server never sees half an adapter.
    staged = work / "adapter"
    trainer.save_model(str(staged))
    shutil.rmtree(spec.adapter_dir, ignore_errors=True)
    staged.rename(spec.adapter_dir)
    shutil.rmtree(work, ignore_errors=True)
    return TrainResult(
        steps=int(output.global_step),
        trained_tokens=callback.tokens,
        train_loss=callback.train_loss,
        valid_loss=callback.valid_loss,
    )
