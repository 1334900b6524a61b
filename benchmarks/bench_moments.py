"""Moment retrieval in a two-hour recording: time and memory of the streamed search.

    PYTHONPATH=. python benchmarks/bench_moments.py                  # 2 h, the zero-shot tag-bridge (make bench)
    PYTHONPATH=. python benchmarks/bench_moments.py --hours 0.25     # a quick look
    PYTHONPATH=. python benchmarks/bench_moments.py --system tiny    # an untrained synth-tiny dual encoder

1. A recording of ``--hours`` is generated with :func:`atrlib.moments.generate.generate_moments`
   from the embedded synth clips (a noise bed and 3 events), written to disk in 10-s blocks —
   never held whole (the peak memory of this step is printed too).
2. The recording is searched for its three captions with one streamed pass
   (:class:`atrlib.moments.retrieve.CurveRetriever`: windows read with soundfile blocks, resampled
   on the fly, ``--batch`` windows per tower call), with the window-vector cache off so that the
   work is done here. ``tagbridge`` needs the EfficientAT weights; without them (or with
   ``--system tiny``) an untrained ``synth-tiny`` dual encoder is timed instead (its answers mean
   nothing; the cost is the point).

Memory is the peak resident set sampled every 20 ms by a thread during each step, against the
resident set before it (models loaded); the audio held whole would take ``samples x 4`` bytes
at the tower's rate, printed beside it. The load average is printed with the table (the machine
this was written on is shared). Nothing here is asserted; the tests hold no times.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import atrlib  # noqa: F401  (thread settings before torch)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """The peak resident set (MB) while the block runs, sampled by a thread."""

    def __init__(self, every: float = 0.02):
        self.every, self.peak, self._stop = every, 0.0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.every)

    def __enter__(self):
        self.before = rss_mb()
        self.peak = self.before
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def system_for(name: str, folder: Path):
    from atrlib.moments.retrieve import CurveRetriever, curve_retriever

    if name == "tagbridge":
        from atrlib.errors import WeightsNotFoundError

        try:
            return curve_retriever("tagbridge"), "tagbridge (zero-shot)"
        except WeightsNotFoundError as e:
            print(f"note: tag-bridge weights absent ({str(e).splitlines()[0]}); timing an untrained synth-tiny instead")
    import torch

    from atrlib.models.dual import create_model, save_model
    from atrlib.moments.encoders import DualWindows

    torch.manual_seed(0)
    save_model(create_model("synth-tiny"), folder / "tiny-run" / "best")
    return CurveRetriever(DualWindows(folder / "tiny-run"), cache=False), "synth-tiny dual encoder (untrained)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", type=float, default=2.0, help="length of the generated recording")
    p.add_argument("--system", default="tagbridge", choices=("tagbridge", "tiny"), help="what searches")
    p.add_argument("--batch", type=int, default=16, help="windows per tower call")
    p.add_argument("--dir", default="", help="where the recording goes (default: a temporary folder)")
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from atrlib.data import load_dataset
    from atrlib.moments.generate import generate_moments

    tmp = tempfile.TemporaryDirectory() if not args.dir else None
    folder = Path(args.dir or tmp.name)
    seconds = args.hours * 3600
    # 1. the recording, written block by block
    clips = load_dataset("synth", split="test", size="tiny")
    with PeakRSS() as gen_mem:
        t0 = time.perf_counter()
        queries = generate_moments(clips, folder / "rec", n=1, duration=seconds, seed=0, sample_rate=16000,
                                   min_events=3, max_events=3)
        gen_s = time.perf_counter() - t0
    wav = folder / "rec" / "rec00000.wav"
    # 2. the search: one streamed pass for the three captions
    system, label = system_for(args.system, folder)
    system.cache, system.batch = False, args.batch
    texts = [q.query for q in queries]
    import numpy as np

    system.encoder.encode_texts(texts)  # both towers loaded and run once on a full batch before memory is measured
    system.encoder.encode_windows(np.zeros((args.batch, int(system.window * system.encoder.sample_rate)), np.float32))
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        curves, rec = system.curves(wav, texts, progress=True)
        from atrlib.moments.spans import decode_spans

        answers = [decode_spans(curves[:, i], rec.duration, system.spans) for i in range(len(texts))]
        search_s = time.perf_counter() - t0
    whole_mb = rec.duration * system.encoder.sample_rate * 4 / 2**20
    hits = []
    for q, a in zip(queries, answers):
        (s, e), (ps, pe, _) = q.windows[0], a[0]
        inter = max(0.0, min(e, pe) - max(s, ps))
        hits.append(inter / (max(e, pe) - min(s, ps)))
    rows = [("step", "audio", "seconds", "x real time", "peak RSS (MB)", "growth (MB)", "windows"),
            ("generate (16 kHz, 10-s blocks)", f"{seconds / 3600:.2f} h", f"{gen_s:.1f}", f"{seconds / gen_s:.0f}",
             f"{gen_mem.peak:.0f}", f"{gen_mem.peak - gen_mem.before:.0f}", "—"),
            (f"search: {label}", f"{rec.duration / 3600:.2f} h", f"{search_s:.1f}", f"{rec.duration / search_s:.0f}",
             f"{mem.peak:.0f}", f"{mem.peak - mem.before:.0f}", f"{len(rec.starts)}")]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows))
    print(f"window {system.window:g} s every {system.spans.hop:g} s, {args.batch} windows per call; "
          f"the whole recording as float32 at {system.encoder.sample_rate} Hz would take {whole_mb:.0f} MB; "
          f"first answers' IoU with the three events: {', '.join(f'{h:.2f}' for h in hits)}; "
          f"load average {'/'.join(f'{v:.1f}' for v in os.getloadavg())}, {os.cpu_count()} cores")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
