"""Log-mel throughput: atrlib's torch LogMel (batched) vs librosa on the same settings.

Prints clips/s for 10-s clips at each preset's sample rate. Run: ``make bench``.
"""
import atrlib  # noqa: F401  (thread settings first)

import time

import librosa
import numpy as np
import torch

from atrlib.audio.features import FEATURE_PRESETS, LogMel


def bench(fn, repeat=3):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(n_clips=32, seconds=10.0):
    print(f"log-mel of {n_clips} clips x {seconds:.0f} s, torch threads {torch.get_num_threads()}, best of 3")
    print(f"{'preset':<12}{'sr':>7}{'mels':>6}{'atrlib clips/s':>16}{'librosa clips/s':>17}{'speed-up':>10}{'max |diff| dB':>15}")
    rng = np.random.default_rng(0)
    for name in ("panns", "small"):
        cfg = FEATURE_PRESETS[name]
        waves = rng.standard_normal((n_clips, int(cfg.sample_rate * seconds))).astype(np.float32) * 0.1
        m = LogMel(cfg)
        x = torch.from_numpy(waves)
        with torch.no_grad():
            t_ours = bench(lambda: m(x))
            ours = m(x[:1])[0].numpy()

        def lib():
            return [librosa.power_to_db(librosa.feature.melspectrogram(
                y=w, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, center=True, pad_mode="reflect", power=2.0),
                ref=1.0, amin=cfg.log_offset, top_db=None) for w in waves]

        t_lib = bench(lib, repeat=1)
        diff = np.abs(ours - lib()[0]).max()
        print(f"{name:<12}{cfg.sample_rate:>7}{cfg.n_mels:>6}{n_clips / t_ours:>16.1f}{n_clips / t_lib:>17.1f}"
              f"{t_lib / t_ours:>9.1f}x{diff:>15.4f}")
    cfg = FEATURE_PRESETS["efficientat"]
    x = torch.from_numpy(rng.standard_normal((n_clips, int(cfg.sample_rate * seconds))).astype(np.float32) * 0.1)
    m = LogMel(cfg)
    with torch.no_grad():
        t = bench(lambda: m(x))
    print(f"{'efficientat':<12}{cfg.sample_rate:>7}{cfg.n_mels:>6}{n_clips / t:>16.1f}{'(kaldi mels: no librosa twin)':>42}")


if __name__ == "__main__":
    main()
