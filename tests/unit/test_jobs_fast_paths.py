"""scheduler.jobs' cheaper paths for a restart's 30,000 rows, against what they replaced, on seeded families:
``Job.__init__`` generated from the fields (slot stores) builds the same Job as the dataclass's own __init__
(positional, keyword, defaults; the same objects in every field; still frozen); ``job_extras``' one regex scan
decides to parse exactly where the key-by-key check did, and returns the same extras."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest

from scheduler.jobs import _NO_EXTRAS, Job, _dataclass_init, job_extras

FIELDS = dataclasses.fields(Job)


def _value(rng: random.Random, name: str) -> Any:
    pick: dict[str, Any] = {
        "job_id": lambda: f"j{rng.randrange(10**9)}", "tenant": lambda: rng.choice(["a", "science", ""]),
        "kind": lambda: rng.choice(["training", "batch", "inference"]), "submit_s": lambda: rng.uniform(0, 1e6),
        "gpus": lambda: rng.randint(1, 64), "duration_s": lambda: rng.uniform(1, 1e5),
        "deadline_s": lambda: rng.choice([None, rng.uniform(0, 1e6)]), "preemptible": lambda: rng.random() < 0.5,
        "pool": lambda: rng.choice([None, "p0", "gpu=h100,jurisdiction=nl"]), "priority": lambda: rng.randint(-3, 10),
        "checkpoint_interval_s": lambda: rng.uniform(60, 7200), "jurisdiction": lambda: rng.choice([None, "nl"]),
        "clearance": lambda: rng.choice([None, "secret"]), "entrypoint": lambda: rng.choice([None, "python x.py"]),
        "pools_allowed": lambda: tuple(rng.sample(["p0", "p1", "p2"], rng.randint(0, 3))),
        "env": lambda: tuple((f"K{i}", str(i)) for i in range(rng.randint(0, 3))),
        "args": lambda: tuple(str(i) for i in range(rng.randint(0, 3))), "workdir": lambda: rng.choice([None, "/w"]),
        "dependencies": lambda: tuple(("afterok", f"d{i}") for i in range(rng.randint(0, 2))),
        "begin_s": lambda: rng.choice([None, rng.uniform(0, 1e6)]), "deadline_hard": lambda: rng.random() < 0.5,
    }  # fmt: skip
    return pick[name]()


def _reference(**kw: Any) -> Job:
    job = object.__new__(Job)
    _dataclass_init(job, **kw)
    return job


@pytest.mark.parametrize("seed", range(30))
def test_generated_init_builds_the_dataclass_job(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20):
        kw = {f.name: _value(rng, f.name) for f in FIELDS if f.default is dataclasses.MISSING or rng.random() < 0.5}
        want = _reference(**kw)
        n_pos = 0  # the longest run of leading fields given: positionally, the rest by keyword
        while n_pos < len(FIELDS) and FIELDS[n_pos].name in kw:
            n_pos += 1
        n_pos = rng.randint(0, n_pos)
        pos = [kw[f.name] for f in FIELDS[:n_pos]]
        rest = {k: v for k, v in kw.items() if k not in {f.name for f in FIELDS[:n_pos]}}
        for got in (Job(**kw), Job(*pos, **rest)):
            assert got == want
            for f in FIELDS:
                assert getattr(got, f.name) is getattr(want, f.name), f.name
    with pytest.raises(TypeError):
        Job("j", "t", "training", 0.0, 1)  # type: ignore[call-arg]  # duration_s missing
    with pytest.raises(TypeError):
        Job("j", "t", "training", 0.0, 1, 1.0, nope=1)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Job("j", "t", "training", 0.0, 1, 1.0).gpus = 2  # type: ignore[misc]
    assert dataclasses.replace(Job("j", "t", "training", 0.0, 1, 1.0), gpus=3).gpus == 3


def _reference_extras_check(spec_json: str) -> bool:
    """The key-by-key test job_extras used before the regex: True where it went on to parse."""
    for k in _NO_EXTRAS:
        at = spec_json.find(k[:-4])
        if at >= 0 and not spec_json.startswith("null", at + len(k) - 4):
            return True
    return False


@pytest.mark.parametrize("seed", range(30))
def test_extras_parse_exactly_where_the_key_by_key_check_did(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    parsed: list[str] = []
    real_loads = json.loads

    def loads(s: str, *a: Any, **k: Any) -> Any:
        parsed.append(s)
        return real_loads(s, *a, **k)

    monkeypatch.setattr(json, "loads", loads)
    for i in range(80):
        spec: dict[str, Any] = {"args": None, "begin": None, "deadline_policy": None, "dependencies": None,
                                "env": None, "workdir": None, "gpus": rng.randint(1, 8),
                                "name": rng.choice([f"r{i}", '"args":1', "env", '"workdir":"x"'])}  # fmt: skip
        if rng.random() < 0.3:
            spec["args"] = [str(rng.randint(0, 9))]
        if rng.random() < 0.2:
            spec["env"] = {rng.choice(["K", "args", "workdir"]): "v"}
        if rng.random() < 0.1:
            spec["deadline_policy"] = rng.choice(["hard", "soft"])
        if rng.random() < 0.1:
            spec["workdir"] = "/w"
        if rng.random() < 0.1:
            spec["begin"] = "2026-12-04T00:00:00Z"
        if rng.random() < 0.1:
            spec["dependencies"] = [{"kind": "afterok", "job_id": "d"}]
        for k in list(spec):
            if spec[k] is None and rng.random() < 0.3:  # stored before the field existed
                del spec[k]
        text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        parsed.clear()
        got = job_extras(text, 1.7e9)
        assert bool(parsed) == _reference_extras_check(text), text
        assert bool(got) == any(spec.get(k) for k in ("args", "env", "workdir", "begin", "dependencies")) or (
            spec.get("deadline_policy") == "hard"), text  # fmt: skip
