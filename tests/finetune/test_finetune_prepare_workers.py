"""A build screened in a worker process is byte-for-byte the build screened in-process."""

from __future__ import annotations

from pathlib import Path

from test_finetune_samples import corpus, interaction, stream

from tara.finetune.config import FinetuneSettings
from tara.finetune.prepare import prepare
from tara.finetune.screening import BATCH


async def test_worker_process_build_matches_the_inline_build(tmp_path: Path) -> None:
    items = corpus({("hi", "physics"): BATCH, ("ta", "math"): 1800, ("en", "chemistry"): 300})
    # Duplicates across batch boundaries: the duplicate memory must see log order.
    items += [
        interaction(
            f"dup-{i}",
            language=items[i].language,
            subject=items[i].subject,
            question=str(items[i].messages[-1]["content"]),
            answer=items[i].answer,
        )
        for i in range(0, 40, 3)
    ]
    inline = await prepare(
        stream(items), FinetuneSettings(min_interactions=30, workers=0), tmp_path / "a"
    )
    pooled = await prepare(
        stream(items), FinetuneSettings(min_interactions=30, workers=1), tmp_path / "b"
    )
    assert len(items) > 2 * BATCH  # several batches went to the worker
    assert inline.manifest["rules"] == pooled.manifest["rules"]
    assert inline.manifest["rules"]["duplicate"] > 0
    for split in ("train", "validation", "test"):
        assert inline.files[split].sha256 == pooled.files[split].sha256
        assert inline.files[split].examples > 0
