"""Seeded job specs for the store's and the restart's tests (tests/unit/test_restart_load.py,
test_state_inbox.py): one generator, so that both walk the same family of specs (every optional field
present in some, absent in others)."""

from __future__ import annotations

import random

from scheduler.models import JobSpec


def random_spec(rng: random.Random, i: int) -> JobSpec:
    """Job spec number ``i`` drawn from ``rng``: sizes 1-16 GPUs, short and long (fractional) durations,
    and each of deadline, priority, non-preemptible, checkpoints, pool, requirements, kind, entrypoint
    (with args and env in half of them) and begin in a share of the specs."""
    d: dict[str, object] = {"name": f"j{i}", "gpus": rng.choice([1, 2, 4, 8, 16]),
                            "duration_s": rng.choice([60.0, 3600.0, 7200.5])}  # fmt: skip
    if rng.random() < 0.3:
        d["deadline"] = "2027-01-20T00:00:00Z"
    if rng.random() < 0.3:
        d["priority"] = rng.randint(-5, 5)
    if rng.random() < 0.3:
        d["preemptible"] = False
    if rng.random() < 0.2:
        d["checkpoint_interval_s"] = 600.0
    if rng.random() < 0.2:
        d["pool"] = rng.choice(["h100-eu-public", "gpu=h100,jurisdiction=eu"])
    if rng.random() < 0.2:
        d["requires"] = {"jurisdiction": "eu"}
    if rng.random() < 0.2:
        d["kind"] = rng.choice(["batch", "inference"])
    if rng.random() < 0.2:
        d["entrypoint"] = "python train.py"
        if rng.random() < 0.5:
            d["args"] = ["--lr", "0.1"]
            d["env"] = {"A": "1"}
    if rng.random() < 0.1:
        d["begin"] = "2027-01-16T00:00:00Z"
    return JobSpec.model_validate(d)
