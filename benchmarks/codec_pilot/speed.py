"""What speeds a bare training step on one CPU thread: layout (channels_last), torch.compile, batch/crop.

A step = sample batch (in-memory crops) + forward + RD loss + backward + Adam step + aux loss/step.
Times are CPU process time per step (median of the timed steps after warm-up), so another process on the
other core does not count. Writes a markdown table to results/codec_pilot/speed.md (and .json).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/codec_pilot/speed.py
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from data import CropSampler, split
from evaluate import RESULTS
import models
from models import build, param_groups, rd_loss


def measure(arch, N, M, crop, batch, channels_last, compile_, sampler_cache, n_warm=2, n_time=5):
    torch.manual_seed(0)
    model = build(arch, N, M)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    main, aux = param_groups(model)
    opt, aopt = torch.optim.Adam(main, 1e-4), torch.optim.Adam(aux, 1e-3)
    fwd = torch.compile(model) if compile_ else model
    s = sampler_cache.setdefault(crop, CropSampler(split(n_val=8)[0], crop))
    times, t_first = [], None
    for i in range(n_warm + n_time):
        t0 = time.process_time()
        x = s.batch(batch, channels_last=channels_last)
        out = fwd(x)
        loss, bpp, mse = rd_loss(out, x, 0.013)
        models.optimizer_step(model, loss, opt, aopt)
        dt = time.process_time() - t0
        if i == 0:
            t_first = dt
        if i >= n_warm:
            times.append(dt)
    st = float(np.median(times))
    return {"arch": arch, "N": N, "M": M, "crop": crop, "batch": batch, "channels_last": channels_last,
            "compile": compile_, "step_s": st, "first_step_s": t_first,
            "us_per_pixel": st / (batch * crop * crop) * 1e6}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cache = {}
    rows = []
    plan = [
        ("mean", 128, 192, 128, 8, False, False),
        ("mean", 128, 192, 128, 8, True, False),
        ("mean", 128, 192, 256, 2, False, False),
        ("mean", 128, 192, 256, 2, True, False),
        ("mean", 128, 192, 128, 16, False, False),
        ("mean", 64, 96, 128, 8, False, False),
        ("mean", 64, 96, 128, 8, True, False),
        ("factorized", 128, 192, 128, 8, False, False),
        ("hyperprior", 128, 192, 128, 8, False, False),
        ("mean", 128, 192, 128, 8, False, True),
    ]
    for p in plan:
        try:
            r = measure(*p, cache)
        except Exception as e:  # torch.compile may fail on a machine without a working toolchain
            r = dict(zip(("arch", "N", "M", "crop", "batch", "channels_last", "compile"), p), error=repr(e)[:300])
        rows.append(r)
        print(r, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "speed.json").write_text(json.dumps(rows, indent=1))
    lines = [f"# Bare training-step time on one CPU thread ({datetime.now(timezone.utc):%Y-%m-%d}, "
             f"{platform.processor() or platform.machine()}, 2 shared cores, torch {torch.__version__}, "
             "`torch.set_num_threads(1)`, `nice -n 5`)", "",
             "Step = in-memory crop batch + forward + RD loss + backward + Adam + aux step; median CPU time "
             "(process time) of 5 steps after 2 warm-up steps.", "",
             "| arch | N | M | crop | batch | channels_last | torch.compile | step (s) | first step (s) | us / pixel |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['arch']} | {r['N']} | {r['M']} | {r['crop']} | {r['batch']} | {r['channels_last']} | "
                         f"{r['compile']} | failed: {r['error']} | | |")
        else:
            lines.append(f"| {r['arch']} | {r['N']} | {r['M']} | {r['crop']} | {r['batch']} | {r['channels_last']} | "
                         f"{r['compile']} | {r['step_s']:.3f} | {r['first_step_s']:.1f} | {r['us_per_pixel']:.2f} |")
    (RESULTS / "speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
