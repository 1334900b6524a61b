"""Audio towers: forward speed on a 10-s clip, FLOPs per clip, share of the machine's matmul
peak, peak memory. Random weights (speed does not depend on them), eval mode, no gradients.

Each tower runs in its own subprocess so its peak memory (max RSS on CPU, max allocated on
CUDA) is its own. The matmul peak is measured here (float32 GEMM, best of a few), so
"% peak" = achieved FLOP/s / measured GEMM FLOP/s. Kept short: 1 warm-up + ``--clips`` (2)
timed clips, one at a time. Run: ``python benchmarks/bench_towers.py [names...] [--device cuda]``.
"""
import atrlib  # noqa: F401  (thread settings first)

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

DEFAULT = ["mel-stats", "small-cnn", "aisfx", "efficientat-mn04", "cnn14", "resnet38", "wavegram-logmel-cnn14",
           "beats", "passt"]
KWARGS = {"efficientat-mn04": {"pretrained": False}}


def matmul_peak(device: str, n: int = 2048, reps: int = 5) -> float:
    """Best float32 GEMM FLOP/s over ``reps`` runs of an n x n product."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(reps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def one(name: str, clips: int, seconds: float, device: str) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from atrlib.models.towers import AUDIO_TOWERS

    torch.manual_seed(0)
    tower = AUDIO_TOWERS.get(name)(**KWARGS.get(name, {})).eval().to(device)
    wave = 0.1 * torch.randn(1, int(seconds * tower.sample_rate), device=device)   # (1, samples)
    params = sum(p.numel() for p in tower.parameters())
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            tower(wave)
        flops = fc.get_total_flops()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(clips):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            tower(wave)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"name": name, "params": params, "flops": flops, "sec_per_clip": sum(times) / len(times), "peak_mib": peak}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=DEFAULT)
    ap.add_argument("--clips", type=int, default=2, help="timed clips (after one warm-up inside the FLOP count)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.clips, a.seconds, a.device)))
        return 0
    from atrlib.models.towers import AUDIO_TOWERS

    peak = matmul_peak(a.device)
    print(f"audio towers, {a.seconds:.0f}-s clip, batch 1, {a.clips} timed clips, device {a.device}, "
          f"torch threads {torch.get_num_threads()}; measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'tower':<24}{'params M':>9}{'GFLOP/clip':>11}{'clips/s':>9}{'% peak':>8}{'peak MiB':>10}")
    rc = 0
    for name in a.names:
        if name not in AUDIO_TOWERS:
            print(f"{name:<24}  (not registered here)")
            continue
        cmd = [sys.executable, __file__, "--one", name, "--clips", str(a.clips), "--seconds", str(a.seconds),
               "--device", a.device]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name:<24}  failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            rc = 1
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        rate = d["flops"] / d["sec_per_clip"]
        print(f"{name:<24}{d['params'] / 1e6:>9.2f}{d['flops'] / 1e9:>11.2f}{1 / d['sec_per_clip']:>9.2f}"
              f"{100 * rate / peak:>7.1f}%{d['peak_mib']:>10.0f}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
