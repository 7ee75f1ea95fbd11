"""Real example workloads and the job-side runtime they run in (no ray import here).

``training``: a numpy MLP on seeded synthetic 8x8 glyph images (10 classes), checkpointing and resuming.
``inference``: a glyph classifier answering requests at a rate replayed from the Azure LLM trace.
"""

from __future__ import annotations

#: The entrypoint used when a job names none, by job kind.
DEFAULT_ENTRYPOINTS: dict[str, str] = {
    "training": "scheduler.workloads.training:run",
    "batch": "scheduler.workloads.training:run",
    "inference": "scheduler.workloads.inference:run",
}
