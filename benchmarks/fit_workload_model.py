"""Fit the compact workload model that ships as Windward's embedded default workload.

Reads the real traces in place (never copies them) and writes only fitted distributions to
``scheduler/data/workload_model.json``:

    python -m benchmarks.fit_workload_model [--out PATH]

* **Training jobs** (Microsoft ITP traces ``traces/itp/cluster01..06.csv``, pooled): the GPU-count distribution
  (values and probabilities); per GPU-count class (1, 2-4, 8, 16+) the quantile function of ln(duration_s)
  on 23 levels (0, 5, ..., 95, 99, 99.9, 100 %) and the mean duration; the arrival weight of each hour of
  the day (trace time 0 taken as 00:00; the trace does not give its wall-clock origin), and the mean
  arrival rate per cluster-day.
* **Inference** (Azure LLM inference trace 2023, ``traces/azure-llm/AzureLLMInferenceTrace_conv.csv``,
  Patel et al., "Splitwise", ISCA 2024): mean request rate, the per-minute rate's coefficient of variation
  and lag-1 autocorrelation, and mean context / generated tokens per request.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from benchmarks.fit_energy_model import dump_json
from scheduler.paths import REPO_ROOT, azure_llm_csv, itp_trace_csv

OUT_DEFAULT = REPO_ROOT / "scheduler" / "data" / "workload_model.json"
CLUSTERS = ("cluster01", "cluster02", "cluster03", "cluster04", "cluster05", "cluster06")
DURATION_LEVELS = [i / 20 for i in range(20)] + [0.99, 0.999, 1.0]
#: GPU-count classes for the conditional duration distribution: (name, lowest gpus, highest gpus).
GPU_CLASSES = (("1", 1, 1), ("2-4", 2, 4), ("8", 5, 8), ("16+", 9, 1 << 30))


def _read_itp(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sub, dur, gpu = [], [], []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            sub.append(float(row["submission_time"]))
            dur.append(float(row["duration"]))
            gpu.append(int(row["num_gpu"]))
    return np.asarray(sub), np.asarray(dur), np.asarray(gpu)


def fit_itp() -> dict:
    subs, durs, gpus = [], [], []
    cluster_days = 0.0
    per_cluster = {}
    for c in CLUSTERS:
        s, d, g = _read_itp(itp_trace_csv(c))
        span_d = (s.max() - s.min()) / 86400.0
        cluster_days += span_d
        per_cluster[c] = {
            "jobs": int(s.size),
            "span_days": round(span_d, 2),
            "gpu_hours_per_day": round(float((g * d).sum() / 3600 / span_d), 1),
        }
        subs.append(s)
        durs.append(d)
        gpus.append(g)
    s = np.concatenate(subs)
    d = np.maximum(np.concatenate(durs), 1.0)
    g = np.concatenate(gpus)
    values, counts = np.unique(g, return_counts=True)
    hours = ((s % 86400) // 3600).astype(int)
    hour_w = np.bincount(hours, minlength=24).astype(float)
    hour_w /= hour_w.mean()
    classes = []
    for name, lo, hi in GPU_CLASSES:
        m = (g >= lo) & (g <= hi)
        classes.append(
            {
                "gpus": name,
                "min_gpus": lo,
                "max_gpus": min(hi, int(g.max())),
                "jobs": int(m.sum()),
                "ln_duration_s_quantiles": [
                    round(float(v), 5) for v in np.quantile(np.log(d[m]), DURATION_LEVELS)
                ],
                "mean_duration_s": round(float(d[m].mean()), 1),
            }
        )
    return {
        "source": "Microsoft ITP GPU training traces cluster01..06 (microsoft/elasticflow-traces, MIT)",
        "jobs": int(s.size),
        "jobs_per_cluster_day": round(s.size / cluster_days, 2),
        "per_cluster": per_cluster,
        "gpu_values": [int(v) for v in values],
        "gpu_probs": [round(float(c / counts.sum()), 6) for c in counts],
        "duration_quantile_levels": DURATION_LEVELS,
        "duration_by_gpu_class": classes,
        "arrival_hour_weights": [round(float(v), 5) for v in hour_w],
        "arrival_hour_note": "hour of day of submission_time mod 86400; trace time 0 taken as 00:00",
    }


def fit_azure() -> dict:
    ts, ctx, gen = [], [], []
    with azure_llm_csv().open(newline="") as f:
        for row in csv.DictReader(f):
            ts.append(row["TIMESTAMP"].strip().replace(" ", "T"))
            ctx.append(int(row["ContextTokens"]))
            gen.append(int(row["GeneratedTokens"]))
    t = np.array(ts, dtype="datetime64[ns]")
    sec = (t - t[0]).astype(np.int64) / 1e9
    per_min = np.bincount((sec // 60).astype(int)).astype(float)
    per_min = per_min[: int(sec[-1] // 60)]  # whole minutes only
    rate = per_min / 60.0
    phi = float(np.corrcoef(rate[:-1], rate[1:])[0, 1])
    return {
        "source": "Azure LLM inference trace 2023, conversation (Azure/AzurePublicDataset, CC-BY-4.0; "
        "Patel et al., Splitwise, ISCA 2024)",
        "start_utc": str(t[0].astype("datetime64[s]")) + "Z",
        "span_s": round(float(sec[-1]), 1),
        "requests": int(t.size),
        "mean_rate_per_s": round(float(rate.mean()), 4),
        "per_minute_rate_cv": round(float(rate.std() / rate.mean()), 4),
        "per_minute_rate_phi": round(phi, 4),
        "mean_context_tokens": round(float(np.mean(ctx)), 2),
        "mean_generated_tokens": round(float(np.mean(gen)), 2),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT)
    args = ap.parse_args(argv)
    model = {
        "label": "synthetic workload, calibrated to ITP traces + Azure LLM inference 2023",
        "fitted_by": "benchmarks/fit_workload_model.py",
        "training": fit_itp(),
        "inference": fit_azure(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump_json(model))
    print(
        json.dumps(
            {
                "out": str(args.out),
                "jobs": model["training"]["jobs"],
                "gpu_values": model["training"]["gpu_values"],
                "gpu_probs": model["training"]["gpu_probs"],
                "inference_rate_per_s": model["inference"]["mean_rate_per_s"],
            }
        )
    )


if __name__ == "__main__":
    main()
