"""Transformer audio towers on this CPU: forward speed, FLOPs and memory for a 10-s clip.

For each tower (real-size configuration, random weights, eval mode, no grad), in a fresh
process so that peak memory is its own:

- clips/s: ``clips`` clips of ``seconds`` s in one batch, best of ``repeat`` after a warm-up;
- GFLOP/clip: ``torch.utils.flop_counter`` over one clip (matmuls, convs, attention; the
  FFT front end is not counted);
- % of matmul peak: achieved FLOP/s over this machine's measured float32 matmul rate
  (best of a few 2048 x 2048 products with the same thread count);
- peak RSS: the process's maximum resident memory (weights + activations + the Python/torch
  baseline, printed on its own line).

Run: ``python benchmarks/bench_towers_transformers.py [--towers beats passt] [--clips 2]``.
Takes about a minute per tower on 2 cores; do not run it in a loop.
"""
import atrlib  # noqa: F401  (thread settings first)

import argparse
import multiprocessing as mp
import resource
import time

import torch


def matmul_peak_gflops(n: int = 2048, repeat: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _run(name: str, clips: int, seconds: float, repeat: int, queue) -> None:
    import atrlib.models  # noqa: F401  (not needed: the tower registry finds its modules on first look-up)
    from torch.utils.flop_counter import FlopCounterMode

    from atrlib.models.towers import AUDIO_TOWERS

    base = _rss_mb()
    torch.manual_seed(0)
    tower = AUDIO_TOWERS.get(name)().eval()
    params = sum(p.numel() for p in tower.parameters())
    wave = 0.1 * torch.randn(clips, int(seconds * tower.sample_rate))
    with torch.no_grad():
        flops = FlopCounterMode(display=False)
        with flops:
            tower(wave[:1])
        frames, mask = tower.forward_frames(wave[:1])
        tower(wave)  # warm-up
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            tower(wave)
            best = min(best, time.perf_counter() - t)
    queue.put(dict(name=name, params=params, clips_per_s=clips / best, gflop=flops.get_total_flops() / 1e9,
                   frames=tuple(frames.shape[1:]), peak_mb=_rss_mb(), base_mb=base))


def main(towers=("beats", "passt"), clips: int = 2, seconds: float = 10.0, repeat: int = 2) -> None:
    peak = matmul_peak_gflops()
    print(f"{seconds:.0f}-s clips, batch {clips}, torch threads {torch.get_num_threads()}, best of {repeat}; "
          f"measured float32 matmul peak {peak:.1f} GFLOP/s")
    print(f"{'tower':<10}{'params M':>9}{'clips/s':>9}{'GFLOP/clip':>12}{'% peak':>8}{'frames (T, D)':>16}"
          f"{'peak RSS MB':>13}")
    ctx = mp.get_context("spawn")
    for name in towers:
        q = ctx.Queue()
        p = ctx.Process(target=_run, args=(name, clips, seconds, repeat, q))
        p.start()
        r = q.get()
        p.join()
        pct = 100 * r["gflop"] * r["clips_per_s"] / peak
        print(f"{name:<10}{r['params'] / 1e6:>9.2f}{r['clips_per_s']:>9.2f}{r['gflop']:>12.1f}{pct:>7.0f}%"
              f"{str(r['frames']):>16}{r['peak_mb']:>13.0f}")
    print(f"(peak RSS includes ~{r['base_mb']:.0f} MB of Python + torch + atrlib before the tower is built)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--towers", nargs="+", default=["beats", "passt"], help="AUDIO_TOWERS names")
    ap.add_argument("--clips", type=int, default=2, help="clips per batch")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length")
    ap.add_argument("--repeat", type=int, default=2, help="timed repetitions (best is kept)")
    a = ap.parse_args()
    main(a.towers, a.clips, a.seconds, a.repeat)
