"""Sounds the tests write: small, deterministic wav files (import as ``from sounds import tones``)."""
from pathlib import Path

import numpy as np
import soundfile as sf


def tones(folder: Path, n: int = 3) -> Path:
    """``folder`` with ``c0.wav`` … ``c{n-1}.wav``: half-second sines at 300, 600, … Hz, 16 kHz."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(8000) / 16000
    for i in range(n):
        sf.write(folder / f"c{i}.wav", (0.3 * np.sin(2 * np.pi * 300 * (i + 1) * t)).astype(np.float32), 16000)
    return folder
