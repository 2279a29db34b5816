"""Tara gateway: ship fine-tuned LLMs safely.

Packages: ``gateway`` (the hot path), ``rollout`` (routing table, canary
analysis, controller), ``telemetry`` (metrics, window stats, interaction log),
``triggers`` (when to fine-tune), ``finetune`` (how to fine-tune) and
``sandbox`` (a local OpenAI-compatible upstream). ``tara.cli`` wires them.
"""

__version__ = "0.1.0"
