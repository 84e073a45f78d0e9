"""Speed of ML-CLIPSim against the bare encoder and torchmetrics SSIM / MS-SSIM.

    python benchmarks/speed.py [--backbone ViT-B-32] [--batch 8] [--size 224] [--repeats 5] [--device cpu]

Measures, on one batch of random images (random encoder weights are fine for speed):
- ML-CLIPSim forward (no grad), references encoded in the call and with cached reference features;
- ML-CLIPSim forward+backward to the distorted images, reference features cached;
- the bare open_clip encoder's forward+backward on the distorted images alone (the floor);
- torchmetrics SSIM and MS-SSIM forward and forward+backward.
Timings: all cases in one process, interleaved round by round, median over rounds; compare them
as ratios from one run. Peak memory: each case once more in its own subprocess (see peak_memory_mb).
Writes benchmarks/results/speed.md and speed.json.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
CASES = {
    "ml_clipsim_forward": "ML-CLIPSim forward, references encoded in the call",
    "ml_clipsim_forward_cached": "ML-CLIPSim forward, cached reference features",
    "ml_clipsim_forward_backward_cached": "ML-CLIPSim forward+backward, cached reference features",
    "encoder_forward_backward": "bare open_clip encoder forward+backward (distorted images only)",
    "ssim_forward": "torchmetrics SSIM forward",
    "ssim_forward_backward": "torchmetrics SSIM forward+backward",
    "ms_ssim_forward": "torchmetrics MS-SSIM forward",
    "ms_ssim_forward_backward": "torchmetrics MS-SSIM forward+backward",
}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def make_steps(backbone: str, batch: int, size: int, device: str) -> dict[str, Callable[[], None]]:
    """One callable per case, all on the same batch and the same scorer."""
    from torchmetrics.functional.image import (
        multiscale_structural_similarity_index_measure as ms_ssim,
    )
    from torchmetrics.functional.image import (
        structural_similarity_index_measure as ssim,
    )

    from mlclipsim.metrics import MLCLIPSimScorer

    torch.manual_seed(0)
    reference = torch.rand(batch, 3, size, size, device=device)
    distorted = (reference + 0.05 * torch.randn_like(reference)).clamp(0, 1)
    scorer = MLCLIPSimScorer(backbone, pretrained="random").to(device)
    features = scorer.reference_features(reference)
    visual = scorer.encoder.visual

    def with_grad(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            x = distorted.clone().requires_grad_()
            fn(x).backward()
        return step

    def no_grad(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            with torch.no_grad():
                fn()
        return step

    return {
        "ml_clipsim_forward": no_grad(lambda: scorer(distorted, reference)),
        "ml_clipsim_forward_cached": no_grad(lambda: scorer(distorted, features)),
        "ml_clipsim_forward_backward_cached": with_grad(lambda x: (1 - scorer(x, features)).mean()),
        "encoder_forward_backward": with_grad(lambda x: visual(scorer.encoder.preprocess(x)[0]).sum()),
        "ssim_forward": no_grad(lambda: ssim(distorted, reference, data_range=1.0)),
        "ssim_forward_backward": with_grad(lambda x: ssim(x, reference, data_range=1.0)),
        "ms_ssim_forward": no_grad(lambda: ms_ssim(distorted, reference, data_range=1.0)),
        "ms_ssim_forward_backward": with_grad(lambda x: ms_ssim(x, reference, data_range=1.0)),
    }


def peak_memory_mb(case: str, backbone: str, batch: int, size: int, device: str) -> float:
    """Extra memory one step of ``case`` needs above what is resident before it (run in a fresh process).

    CPU: the peak resident set size (VmHWM, reset through /proc/self/clear_refs after returning freed
    heap to the OS) minus the resident size before the step. CUDA: torch.cuda.max_memory_allocated.
    """
    step = make_steps(backbone, batch, size, device)[case]
    step()  # warm-up: lazy allocations are not the step's
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_kb("VmRSS")
    step()
    return max(_status_kb("VmHWM") - base, 0) / 1024


def time_cases(backbone: str, batch: int, size: int, repeats: int, device: str) -> dict[str, list[float]]:
    """Seconds per batch of every case, interleaved round by round so machine noise hits all alike."""
    steps = make_steps(backbone, batch, size, device)
    times: dict[str, list[float]] = {case: [] for case in steps}
    for round_index in range(repeats + 1):  # round 0 is the warm-up
        for case, step in steps.items():
            start = time.perf_counter()
            step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if round_index:
                times[case].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-case", default=None, help=argparse.SUPPRESS)  # internal: one case's memory
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.memory_case:
        print(json.dumps(peak_memory_mb(args.memory_case, args.backbone, args.batch, args.size, args.device)))
        return

    times = time_cases(args.backbone, args.batch, args.size, args.repeats, args.device)
    rows = {}
    for case in CASES:
        command = [sys.executable, __file__, "--memory-case", case, "--backbone", args.backbone,
                   "--batch", str(args.batch), "--size", str(args.size), "--device", args.device]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        seconds = statistics.median(times[case])
        rows[case] = {"seconds_per_batch": seconds, "images_per_second": args.batch / seconds,
                      "peak_extra_memory_mb": json.loads(output.strip().splitlines()[-1]), "times": times[case]}
        print(f"{case:40s} {seconds:.3f} s/batch  {rows[case]['peak_extra_memory_mb']:.0f} MB", flush=True)

    floor = rows["encoder_forward_backward"]["seconds_per_batch"]
    ratio = rows["ml_clipsim_forward_backward_cached"]["seconds_per_batch"] / floor
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, " \
              f"{'CUDA ' + torch.cuda.get_device_name() if args.device.startswith('cuda') else 'CPU'}"
    command_line = "python benchmarks/speed.py " + " ".join(sys.argv[1:])
    lines = [
        "# ML-CLIPSim speed",
        "",
        f"Command: `{command_line.strip()}`  ",
        f"Machine: {machine}  ",
        f"Backbone: {args.backbone} (random weights; speed does not depend on them), batch {args.batch}, "
        f"{args.size}x{args.size} px. Times: median of {args.repeats} rounds after a warm-up round, every "
        "round running all cases in turn in one process (so machine noise hits all cases alike). Memory: "
        "each case once more in a fresh process, peak above the resident size before the step.",
        "",
        "| case | s / batch | images / s | ratio to bare encoder fwd+bwd | peak extra memory (MB) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for case, label in CASES.items():
        row = rows[case]
        lines.append(f"| {label} | {row['seconds_per_batch']:.3f} | {row['images_per_second']:.1f} | "
                     f"{row['seconds_per_batch'] / floor:.2f}x | {row['peak_extra_memory_mb']:.0f} |")
    verdict = "met" if ratio <= 1.2 else "missed"
    lines += ["", f"ML-CLIPSim forward+backward with cached reference features costs **{ratio:.2f}x** the bare "
              f"encoder's forward+backward on the distorted images (target <= 1.2x: {verdict}).", ""]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.md").write_text("\n".join(lines))
    (out / "speed.json").write_text(json.dumps({"command": command_line, "machine": machine, "rows": rows}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
