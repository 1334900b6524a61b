"""The memory-mapped frame cache: values, padding and masks, atomic builds, tower frames over files."""
import os

import numpy as np
import pytest
import soundfile as sf
import torch

import atrlib  # noqa: F401  (thread settings before torch work)
from atrlib.audio.frames import MemmapFrameStore, build_frame_cache, tower_frame_cache


def _clips(lengths, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, dim)).astype(np.float32) for n in lengths]


def test_round_trip_padding_and_mask(tmp_path):
    clips = _clips([3, 7, 1, 4])
    store = build_frame_cache(tmp_path / "store", iter(clips), frame_dim=5, meta={"what": "test"})
    assert isinstance(store.frames, np.memmap) and store.frames.dtype == np.float16
    assert len(store) == 4 and store.frame_dim == 5 and store.nbytes == 15 * 5 * 2
    assert (tmp_path / "store" / "frames.bin").stat().st_size == store.nbytes
    assert store.offsets.tolist() == [0, 3, 10, 11] and store.lengths.tolist() == [3, 7, 1, 4]
    frames, mask = store.get(torch.tensor([2, 1, 0]))
    assert frames.shape == (3, 7, 5) and frames.dtype == torch.float32
    assert mask.sum(1).tolist() == [1, 7, 3]
    for b, i in enumerate([2, 1, 0]):
        n = len(clips[i])
        np.testing.assert_array_equal(frames[b, :n].numpy(), clips[i].astype(np.float16).astype(np.float32))
        assert bool((frames[b, n:] == 0).all())
    again = MemmapFrameStore(tmp_path / "store")                          # a fresh reader sees the same
    assert again.meta["what"] == "test" and torch.equal(again.get([1])[0], store.get([1])[0])
    f32 = build_frame_cache(tmp_path / "f32", iter(clips), frame_dim=5, dtype="float32")
    np.testing.assert_array_equal(f32.clip(1), clips[1])                  # float32: exact


def test_build_is_atomic(tmp_path):
    def broken():
        yield from _clips([2, 3])
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError, match="killed"):
        build_frame_cache(tmp_path / "store", broken(), frame_dim=5)
    assert os.listdir(tmp_path) == []                                      # no store, no temp folder
    with pytest.raises(ValueError, match="clip 1"):
        build_frame_cache(tmp_path / "store", iter(_clips([2]) + _clips([2], dim=4)), frame_dim=5)
    assert os.listdir(tmp_path) == []
    build_frame_cache(tmp_path / "store", iter(_clips([2])), frame_dim=5)
    with pytest.raises(FileExistsError):
        build_frame_cache(tmp_path / "store", iter(_clips([2])), frame_dim=5)
    with open(tmp_path / "store" / "frames.bin", "ab") as f:              # a damaged file is refused
        f.write(b"xx")
    with pytest.raises(ValueError, match="rebuild"):
        MemmapFrameStore(tmp_path / "store")
    with pytest.raises(FileNotFoundError, match="not a frame cache"):
        MemmapFrameStore(tmp_path)


class _Files:
    def __init__(self, paths):
        self.items = [{"audio_path": str(p)} for p in paths]

    def __len__(self):
        return len(self.items)


def test_tower_frames_through_the_cache(tmp_path, monkeypatch):
    from atrlib.models.towers import AUDIO_TOWERS

    rng = np.random.default_rng(0)
    paths = []
    for k, sec in enumerate([1.0, 2.5, 0.6]):
        p = tmp_path / f"c{k}.wav"
        sf.write(p, (0.1 * rng.standard_normal(int(16000 * sec))).astype(np.float32), 16000)
        paths.append(p)
    tower = AUDIO_TOWERS.get("mel-stats")()
    store = tower_frame_cache(tower, {"name": "mel-stats"}, _Files(paths), seconds=2.0, root=tmp_path / "fc",
                              dtype="float32", progress=False)
    assert store.lengths.tolist() == [101, 201, 61]                       # 1 + samples // 160, cut at 2 s
    from atrlib.audio.io import load_audio

    x, _ = load_audio(paths[1], sample_rate=16000, duration=2.0)
    with torch.no_grad():
        want = tower.forward_frames(torch.from_numpy(x)[None])[0][0].numpy()
    np.testing.assert_allclose(store.clip(1), want, rtol=0, atol=1e-5)
    monkeypatch.setattr(type(tower), "forward_frames", lambda *a, **k: pytest.fail("recomputed"))
    again = tower_frame_cache(tower, {"name": "mel-stats"}, _Files(paths), seconds=2.0, root=tmp_path / "fc",
                              dtype="float32", progress=False)
    assert again.folder == store.folder
