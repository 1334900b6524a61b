"""Training the moment head (:mod:`atrlib.moments.head`) on generated recordings, and using it.

1. **Examples** (:func:`build_examples`): each query of a :class:`~atrlib.moments.datasets.MomentDataset`
   becomes (frame features (T, D), sentence embedding, ground-truth windows). Frame features are
   a frozen window encoder's vectors averaged onto 1-s frames (``frames``: ``mel-stats``,
   ``tagbridge`` or a trained run folder); an encoder with a text side adds one channel, the
   frame's cosine with the query. Sentences: the frozen ``minilm`` text tower.
2. **Fitting** (:func:`fit_head`), with ``atrlib.train``'s conventions: seeded (``torch`` and the
   batch order), AdamW, device ``auto`` (a GPU when there is one), gradient clipping, the
   validation split scored every ``eval_every`` epochs by the official metrics and the epoch
   with the best validation mAP kept (the test split is never looked at). With ``out_dir`` the
   run is written as ``out_dir/best/`` (the chosen head: ``head.safetensors`` + ``head.json``)
   and ``out_dir/last/`` (plus the optimiser, torch's RNG and the history, after every
   evaluation); a run started again with the same settings (``epochs`` may grow) resumes from
   ``last/`` and ends where an uninterrupted run would (the batch order of epoch ``e`` is drawn
   from ``default_rng([seed, e])``).
3. **Using it** (:class:`HeadRetriever`): ``HeadRetriever.load(out_dir)`` answers queries about
   any recording; recordings longer than ``max_frames`` seconds are read in overlapping chunks
   of ``max_frames`` frames (half overlapping) whose windows meet in one final NMS, so a long
   file never makes one long input.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from atrlib.moments.encoders import WindowEncoder, encode_recording, window_encoder
from atrlib.moments.head import HeadConfig, LossWeights, MomentHead, decode, pad_batch, span_loss
from atrlib.moments.spans import ScoredWindow, frame_curve, temporal_nms
from atrlib.train.config import resolve_device

PathLike = Union[str, Path]
HEAD_FILE = "head.json"     # marks a moment-head folder (with head.safetensors)


@dataclass
class HeadTrainConfig:
    """How the head is trained (every field has a default; ``out_dir`` empty: nothing written)."""

    frames: str = "mel-stats"        # window encoder of the frame features: mel-stats, tagbridge, a run folder
    window: float = 2.0              # analysis window, seconds
    hop: float = 1.0                 # frame length, seconds
    text_tower: str = "minilm"       # frozen sentence encoder (TEXT_TOWERS)
    hidden: int = 64                 # head width
    epochs: int = 60                 # passes over the train queries
    batch_size: int = 8              # queries per step
    lr: float = 0.003                # AdamW learning rate
    weight_decay: float = 0.0001     # AdamW weight decay
    eval_every: int = 5              # epochs between validation scores (the choice is made among these)
    seed: int = 0                    # torch and batch-order seed
    device: str = "auto"             # auto (a GPU when present), cpu, cuda
    max_frames: int = 120            # longest input at prediction time; longer recordings go in chunks
    out_dir: str = ""                # best/ and last/ go here; empty: kept in memory only
    loss: LossWeights = field(default_factory=LossWeights)


@dataclass
class Example:
    qid: str
    vid: str
    frames: np.ndarray               # (T, D) features per frame
    text: np.ndarray                 # (Dt,) sentence embedding
    windows: Tuple[Tuple[float, float], ...]  # ground truth, seconds
    duration: float


def text_embedder(name: str = "minilm", device: str = "cpu"):
    """A function texts -> (m, Dt) unit vectors from the frozen text tower ``name``."""
    from atrlib.models.text_towers import embed_texts
    from atrlib.models.towers import TEXT_TOWERS

    tower = TEXT_TOWERS.get(name)(device=device).eval()

    def embed(texts: Sequence[str]) -> np.ndarray:
        e = embed_texts(tower, list(texts), progress=False)  # (m, Dt)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    embed.dim = int(tower.embed_dim)
    return embed


def frame_features(rec, encoder: WindowEncoder, texts: Sequence[str], hop: float) -> List[np.ndarray]:
    """Per text, (T, D) frame features of one recording's windows (+ the cosine channel when the
    encoder has a text side)."""
    base = frame_curve(rec.starts, rec.window, rec.vectors, rec.duration, hop).astype(np.float32)  # (T, d)
    if not encoder.has_text:
        return [base for _ in texts]
    v = rec.vectors / np.maximum(np.linalg.norm(rec.vectors, axis=1, keepdims=True), 1e-12)  # (n, d)
    t = encoder.encode_texts(list(texts))
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)  # (m, d)
    cos = frame_curve(rec.starts, rec.window, v @ t.T, rec.duration, hop)  # (T, m)
    return [np.concatenate([base, cos[:, i:i + 1].astype(np.float32)], axis=1) for i in range(len(texts))]


def build_examples(ds, encoder: WindowEncoder, embed, window: float, hop: float = 1.0,
                   progress: bool = False) -> List[Example]:
    """One :class:`Example` per query of ``ds`` (a :class:`~atrlib.moments.datasets.MomentDataset`
    with audio), each recording streamed once."""
    from tqdm.auto import tqdm

    texts = embed([q.query for q in ds.queries])  # (queries, Dt)
    row = {q.qid: i for i, q in enumerate(ds.queries)}
    out: Dict[str, Example] = {}
    for vid in tqdm(ds.recordings, desc=f"{encoder.name} features", disable=not progress, leave=False):
        qs = [q for q in ds.queries if q.vid == vid]
        rec = encode_recording(ds.audio[vid], encoder, window, hop)
        for q, f in zip(qs, frame_features(rec, encoder, [q.query for q in qs], hop)):
            out[q.qid] = Example(q.qid, vid, f, texts[row[q.qid]], q.windows, rec.duration)
    return [out[q.qid] for q in ds.queries]


# ----------------------------------------------------------------------------------- fitting
def _batches(examples: Sequence[Example], size: int, rng: np.random.Generator):
    order = rng.permutation(len(examples))  # (n,)
    for s in range(0, len(order), size):
        yield [examples[i] for i in order[s:s + size]]


def predict_examples(head: MomentHead, examples: Sequence[Example], hop: float, max_frames: int = 120
                     ) -> List[List[ScoredWindow]]:
    """Ranked windows for each example (chunked beyond ``max_frames``)."""
    return [predict_frames(head, e.frames, e.text, e.duration, hop, max_frames) for e in examples]


def predict_frames(head: MomentHead, frames: np.ndarray, text: np.ndarray, duration: float, hop: float = 1.0,
                   max_frames: int = 120, max_windows: int = 10) -> List[ScoredWindow]:
    """One recording's frames (T, D) and one sentence (Dt,) -> ranked windows, in chunks of
    ``max_frames`` frames (starting every ``max_frames // 2``, the last aligned to the end)."""
    device = next(head.parameters()).device
    t = len(frames)
    starts = [0] if t <= max_frames else list(range(0, t - max_frames + 1, max_frames // 2))
    if starts[-1] + max_frames < t:
        starts.append(t - max_frames)
    cands: List[ScoredWindow] = []
    head.eval()
    with torch.no_grad():
        q = torch.as_tensor(text, dtype=torch.float32, device=device)[None]  # (1, Dt)
        for s in starts:
            chunk = frames[s:s + max_frames]  # (L, D)
            x = torch.as_tensor(chunk, dtype=torch.float32, device=device)[None]  # (1, L, D)
            mask = torch.ones(1, len(chunk), dtype=torch.bool, device=device)
            logits, deltas = head(x, mask, q)
            cands += decode(head, logits[0].cpu(), deltas[0].cpu(), len(chunk), hop, duration, offset=s * hop,
                            max_windows=3 * max_windows)
    return temporal_nms(cands, 0.5, max_windows)


def _val_score(head, examples, hop, max_frames) -> Dict[str, float]:
    from atrlib.moments.metrics import moment_scores

    preds = predict_examples(head, examples, hop, max_frames)
    return moment_scores([e.windows for e in examples], preds).summary()


def _save(folder: Path, head: MomentHead, meta: dict, trainer: Optional[dict] = None) -> None:
    """``folder``: head.safetensors + head.json (+ trainer.pt), swapped in whole (a kill leaves the old one)."""
    import shutil
    import tempfile

    from safetensors.torch import save_file

    from atrlib.files import dir_mode, file_mode, write_json

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(tmp / "head.safetensors"))
    if trainer is not None:
        torch.save(trainer, tmp / "trainer.pt")
    write_json(tmp / HEAD_FILE, meta)
    os.chmod(tmp, dir_mode())  # the user's normal modes, not mkdtemp's / safetensors' 0700 / 0600
    for f in tmp.iterdir():
        os.chmod(f, file_mode())
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        if old.exists():
            shutil.rmtree(old)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _meta(cfg: HeadTrainConfig, head_cfg: HeadConfig, frames_spec: str, text_dim: int, **extra) -> dict:
    train = {k: v for k, v in asdict(cfg).items() if k not in ("out_dir", "device", "epochs")}
    return {"kind": "atrlib moment head", "head": head_cfg.to_dict(), "frames": frames_spec, "window": cfg.window,
            "hop": cfg.hop, "text_tower": cfg.text_tower, "text_dim": text_dim, "max_frames": cfg.max_frames,
            "train": train, **extra}


def fit_head(train: Sequence[Example], val: Sequence[Example], cfg: HeadTrainConfig, frames_spec: str = "",
             progress: bool = False) -> Tuple[MomentHead, List[dict], int]:
    """Train on ``train``, choose the epoch on ``val`` (mAP, ties: the earlier epoch) -> (head at
    that epoch, history, chosen epoch). See the module text for seeding, checkpoints and resuming."""
    from tqdm.auto import tqdm

    if not train or not val:
        raise ValueError(f"the head needs train and validation queries, got {len(train)} and {len(val)}")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    head_cfg = HeadConfig(frame_dim=int(train[0].frames.shape[1]), text_dim=int(train[0].text.shape[0]),
                          hidden=cfg.hidden)
    head = MomentHead(head_cfg)
    allf = np.concatenate([e.frames for e in train])  # (sum T, D)
    head.feat_mean.copy_(torch.as_tensor(allf.mean(0)))
    head.feat_std.copy_(torch.as_tensor(allf.std(0) + 1e-3))
    head.to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    meta = _meta(cfg, head_cfg, frames_spec, head_cfg.text_dim)
    history: List[dict] = []
    best = {"epoch": 0, "mAP": -1.0, "state": None}
    start = 0
    out = Path(cfg.out_dir) if cfg.out_dir else None
    if out is not None and (out / "last" / "trainer.pt").is_file():  # resume a run with the same settings
        old = json.loads((out / "last" / HEAD_FILE).read_text())
        if old.get("train") == meta["train"] and old.get("frames") == frames_spec:
            from safetensors.torch import load_file

            head.load_state_dict(load_file(str(out / "last" / "head.safetensors")))
            state = torch.load(out / "last" / "trainer.pt", map_location=device, weights_only=True)
            opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            history, start = old["history"], int(old["epoch"])
            if (out / "best" / "head.safetensors").is_file():
                from safetensors.torch import load_file as lf

                b = json.loads((out / "best" / HEAD_FILE).read_text())
                best = {"epoch": b["epoch"], "mAP": b["val"]["mAP"], "state": lf(str(out / "best" / "head.safetensors"))}
    t0 = time.perf_counter()
    for epoch in tqdm(range(start + 1, cfg.epochs + 1), desc="moment head", disable=not progress, leave=False):
        head.train()
        losses = []
        for batch in _batches(train, cfg.batch_size, np.random.default_rng([cfg.seed, epoch])):  # resumable order
            x, mask = pad_batch([e.frames for e in batch], device)  # (B, T, D), (B, T)
            text = torch.as_tensor(np.stack([e.text for e in batch]), device=device)  # (B, Dt)
            gts = [torch.as_tensor(e.windows, dtype=torch.float32, device=device) / cfg.hop for e in batch]
            terms = span_loss(head, *head(x, mask, text), mask, gts, cfg.loss)
            opt.zero_grad()
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            opt.step()
            losses.append({k: float(v.detach()) for k, v in terms.items()})
        row = {"epoch": epoch, **{f"train_{k}": float(np.mean([d[k] for d in losses])) for k in losses[0]}}
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            val_m = _val_score(head, val, cfg.hop, cfg.max_frames)
            row.update({f"val_{k}": v for k, v in val_m.items()})
            if val_m["mAP"] > best["mAP"]:
                best = {"epoch": epoch, "mAP": val_m["mAP"],
                        "state": {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}}
                if out is not None:
                    _save(out / "best", head, {**meta, "epoch": epoch, "val": val_m})
            history.append({**row, "seconds": time.perf_counter() - t0})
            if out is not None:
                _save(out / "last", head, {**meta, "epoch": epoch, "history": history},
                      {"optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state()})
        else:
            history.append({**row, "seconds": time.perf_counter() - t0})
    if best["state"] is not None:
        head.load_state_dict(best["state"])
    head.eval()
    return head, history, int(best["epoch"])


# ----------------------------------------------------------------------------------- using it
class HeadRetriever:
    """A trained moment head as a moment system: ``retrieve(path, texts) -> [windows per text]``."""

    def __init__(self, head: MomentHead, encoder: WindowEncoder, embed, window: float, hop: float = 1.0,
                 max_frames: int = 120, name: str = "moment head"):
        self.head, self.encoder, self.embed = head.eval(), encoder, embed
        self.window, self.hop, self.max_frames, self.name = window, hop, max_frames, name

    @classmethod
    def load(cls, folder: PathLike, device: str = "cpu") -> "HeadRetriever":
        """From a folder written by :func:`fit_head` (``best/`` inside it, or the folder itself)."""
        from safetensors.torch import load_file

        from atrlib.errors import WeightsFileError

        folder = Path(folder)
        d = folder / "best" if (folder / "best" / HEAD_FILE).is_file() else folder
        try:
            meta = json.loads((d / HEAD_FILE).read_text())
            head = MomentHead(HeadConfig.from_dict(meta["head"]))
            head.load_state_dict(load_file(str(d / "head.safetensors")))
        except FileNotFoundError:
            raise WeightsFileError(f"{folder}: no trained moment head here (needs {HEAD_FILE} and head.safetensors, "
                                   "in the folder or in best/); train one with atrlib.moments.head_train") from None
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise WeightsFileError(f"{d}: the moment head cannot be loaded ({type(e).__name__}: {e}); the files are "
                                   "corrupt or from another version — train it again") from None
        encoder = window_encoder(meta["frames"], device=device)
        return cls(head.to(device), encoder, text_embedder(meta["text_tower"], device), meta["window"], meta["hop"],
                   meta["max_frames"], name=f"moment head ({meta['frames'] if len(meta['frames']) < 20 else Path(meta['frames']).name})")

    def retrieve(self, path: PathLike, texts: Sequence[str], progress: bool = False) -> List[List[ScoredWindow]]:
        rec = encode_recording(path, self.encoder, self.window, self.hop, progress=progress)
        sentences = self.embed(list(texts))  # (m, Dt)
        feats = frame_features(rec, self.encoder, texts, self.hop)
        return [predict_frames(self.head, f, s, rec.duration, self.hop, self.max_frames)
                for f, s in zip(feats, sentences)]


def train_head(train_ds, val_ds, cfg: HeadTrainConfig = HeadTrainConfig(), run_dir: Optional[PathLike] = None,
               progress: bool = False) -> Tuple[HeadRetriever, List[dict], int]:
    """Features for both splits, :func:`fit_head`, and the chosen head as a :class:`HeadRetriever`
    -> (retriever, history, chosen epoch). ``cfg.frames`` may name a run folder under ``run_dir``."""
    device = resolve_device(cfg.device)
    encoder = window_encoder(cfg.frames, run_dir, device="cpu")
    spec = cfg.frames if cfg.frames in ("mel-stats", "tagbridge") else _run_path(cfg.frames, run_dir)
    embed = text_embedder(cfg.text_tower, "cpu")
    tr = build_examples(train_ds, encoder, embed, cfg.window, cfg.hop, progress)
    va = build_examples(val_ds, encoder, embed, cfg.window, cfg.hop, progress)
    head, history, epoch = fit_head(tr, va, cfg, frames_spec=spec, progress=progress)
    return HeadRetriever(head.cpu(), encoder, embed, cfg.window, cfg.hop, cfg.max_frames), history, epoch


def _run_path(frames: str, run_dir: Optional[PathLike]) -> str:
    p = Path(frames)
    if not p.exists() and run_dir is not None and (Path(run_dir) / frames).is_dir():
        p = Path(run_dir) / frames
    return str(p.resolve())
