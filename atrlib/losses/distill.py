"""Ensemble distillation (CP-JKU, DCASE 2024 winner; Primus et al. 2024): a student trained
towards an ensemble teacher's estimated audio–caption correspondences.

    loss = "infonce+distill"     # one-hot contrastive targets plus the teacher's (weights: "0.5*infonce+distill")
    loss = "distill"             # the teacher's targets instead of the one-hot ones
    loss_kwargs = {"distill": {"teacher": ["runs/t1", "runs/t2", "runs/t3"], "temperature": 0.05}}

The teacher is a text-to-audio similarity matrix over the *training* split (captions × clips):
stored ``sim_<split>.npz`` files (:mod:`atrlib.retrieval.simfile`), run folders holding one (or scored on
the fly from their ``best/`` weights, and saved there), or an ensemble of several —
:func:`atrlib.retrieval.ensemble.weighted_sum` with ``weights`` (a list, or a dict keyed by folder / file
stem; default equal) and ``norm`` (default ``"none"``).

For a batch with caption rows ``j`` and clips ``k`` (fit() passes the caption indices), the
teacher's block ``T[j, k]`` gives per direction the targets

    P_t2a[j, :] = softmax_k(T[j, k] / temperature)      P_a2t[k, :] = softmax_j(T[j, k] / temperature)

and the term is the mean of the two soft-target cross-entropies against the student's in-batch
``log_softmax(logit_scale * t @ a.T)`` (rows) and its transpose. Other captions of a clip in the
batch get the same teacher scores, so their share of the target is equal.

References: Primus, Schmid, Widmer, "Estimated audio–caption correspondences improve
language-based audio retrieval" (DCASE Workshop 2024); Hinton et al., "Distilling the
knowledge in a neural network" (2015).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from atrlib.errors import TeacherFileError
from atrlib.losses import LOSSES, Terms
from atrlib.losses.crossmodal import CrossBatch, CrossModalTerm
from atrlib.losses.distributed import gather_with_grad
from atrlib.retrieval.simfile import SimilarityMatrix, load_similarity, save_similarity

TeacherSpec = Union[str, Path, Sequence[Union[str, Path]]]


# --------------------------------------------------------------------------- the teacher


def _name(p: Path) -> str:
    return p.stem if p.suffix == ".npz" else p.name


def teacher_sim(source: Union[str, Path], dataset, progress: bool = False) -> SimilarityMatrix:
    """One teacher's similarity over ``dataset`` (the training split): an ``.npz`` file, or a
    run folder's ``sim_<split>.npz``; a run folder without one is scored from ``best/`` (or
    the folder itself) and the matrix saved there for the next student."""
    p = Path(source)
    if p.suffix == ".npz":
        return read_teacher_file(p)
    f = p / f"sim_{dataset.split}.npz"
    if f.exists():
        return read_teacher_file(f)
    weights = p / "best" if (p / "best" / "model.safetensors").exists() else p
    if not (weights / "model.safetensors").exists():
        raise FileNotFoundError(f"teacher {p}: neither {f.name} nor a saved model (best/model.safetensors); "
                                "give a sim_<train split>.npz file or a finished training run")
    from atrlib.models.dual import load_model
    from atrlib.retrieval.scoring import evaluate_model

    sm = evaluate_model(load_model(weights), dataset, progress=progress, system=str(p))
    save_similarity(f, sm)
    return sm


def read_teacher_file(path: Path) -> SimilarityMatrix:
    """A teacher's ``sim_<split>.npz``, checked where it enters: readable as a similarity file,
    a 2-D matrix matching its ids, every score finite; else :class:`TeacherFileError` naming it."""
    import zipfile

    if not path.is_file():
        raise FileNotFoundError(f"teacher {path}: no such similarity file; give a sim_<train split>.npz file "
                                "or a finished training run")
    try:
        sm = load_similarity(path)
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise TeacherFileError(f"teacher {path}: not a readable similarity file ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}); write it with "
                               "atrlib.retrieval.simfile.save_similarity (sim, query_ids, item_ids, relevance)") from e
    sim = np.asarray(sm.sim)
    if sim.ndim != 2 or not np.issubdtype(sim.dtype, np.number):
        raise TeacherFileError(f"teacher {path}: 'sim' must be a 2-D numeric matrix (captions x clips), got "
                               f"shape {sim.shape} of {sim.dtype}")
    bad = ~np.isfinite(sim)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise TeacherFileError(f"teacher {path}: {int(bad.sum())} NaN or infinite score(s), the first at caption "
                               f"{sm.query_ids[r]!r}, clip {sm.item_ids[c]!r}; the teacher is broken — score it again")
    return sm


def _rows_cols(sm: SimilarityMatrix, dataset, name: str):
    """Row of each of ``dataset``'s captions and column of each clip in ``sm``."""
    rows = {q: i for i, q in enumerate(sm.query_ids)}
    cols = {c: i for i, c in enumerate(sm.item_ids)}
    missing = next((q for q in dataset.caption_ids() if q not in rows), None)
    if missing is None:
        missing_clip = next((c for c in dataset.clip_ids if c not in cols), None)
        if missing_clip is None:
            return [rows[q] for q in dataset.caption_ids()], [cols[c] for c in dataset.clip_ids]
        what = f"clip {missing_clip!r}"
    else:
        what = f"caption {missing!r}"
    captions, clips = set(dataset.caption_ids()), set(dataset.clip_ids)
    if captions <= set(sm.item_ids) and clips <= set(sm.query_ids):
        raise TeacherFileError(f"teacher {name}: the matrix is transposed ({len(sm.query_ids)} clips x "
                               f"{len(sm.item_ids)} captions); a teacher holds text-to-audio scores, captions x clips "
                               "(SimilarityMatrix.transposed() turns it round)")
    raise TeacherFileError(f"teacher {name}: its matrix ({len(sm.query_ids)} captions x {len(sm.item_ids)} clips, split "
                     f"{sm.meta.get('split', '?')!r}) lacks {what} of the training split {dataset.split!r}; score the "
                     "teacher on the split the student trains on")


def teacher_matrix(teacher: TeacherSpec, dataset, weights: Union[None, Sequence[float], Mapping[str, float]] = None,
                   norm: str = "none", progress: bool = False) -> np.ndarray:
    """The ensemble teacher's (captions, clips) float32 scores, rows and columns in
    ``dataset``'s order (``caption_ids()``, ``clip_ids``)."""
    from atrlib.retrieval.ensemble import weighted_sum

    sources = [teacher] if isinstance(teacher, (str, Path)) else list(teacher)
    if not sources:
        raise ValueError("distill needs a teacher: loss_kwargs={'distill': {'teacher': ['run_a', 'run_b', ...]}}")
    sims: Dict[str, np.ndarray] = {}
    for s in sources:
        name = _name(Path(s))
        if name in sims:
            name = str(s)
        sm = teacher_sim(s, dataset, progress)
        r, c = _rows_cols(sm, dataset, str(s))
        sims[name] = np.asarray(sm.sim)[np.ix_(r, c)]                             # (captions, clips)
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(sims))
        if unknown:
            raise KeyError(f"distill weights name unknown teachers {unknown}; teachers: {list(sims)}")
    return weighted_sum(sims, weights, norm=norm).astype(np.float32)


def correspondence_targets(block: Tensor, temperature: float) -> Dict[str, Tensor]:
    """(captions, clips) teacher block -> {"t2a": (captions, clips), "a2t": (clips, captions)}
    soft targets, each row a softmax with ``temperature``."""
    z = block.float() / float(temperature)
    return {"t2a": torch.softmax(z, dim=1), "a2t": torch.softmax(z.T, dim=1)}


# --------------------------------------------------------------------------- the loss


@LOSSES.register("distill")
class Distill(CrossModalTerm):
    """Soft-target cross-entropy towards an ensemble teacher (module docstring).

    teacher: run folders / ``.npz`` files (see :func:`teacher_matrix`); weights, norm: how
    they are combined; temperature: of the teacher's softmax (default 0.05, i.e. cosine
    scores × 20); student_temperature: None = the student's own logit scale."""

    needs = ("captions",)

    def __init__(self, teacher: TeacherSpec = (), weights=None, norm: str = "none", temperature: float = 0.05,
                 student_temperature: Optional[float] = None):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"distill: temperature must be > 0, got {temperature}")
        self.teacher_spec, self.weights, self.norm = teacher, weights, norm
        self.temperature, self.student_temperature = float(temperature), student_temperature
        self.scores: Optional[Tensor] = None  # (train captions, train clips), set by bind()
        if not teacher:
            raise ValueError("distill needs a teacher: loss_kwargs={'distill': {'teacher': ['run_a', 'run_b', ...]}} "
                             "(run folders or sim_<train split>.npz files)")

    def bind(self, inputs) -> None:
        if inputs is None:
            raise ValueError("distill needs the training split: build it through fit() or "
                             "build_objective(spec, model, inputs)")
        self.scores = torch.from_numpy(teacher_matrix(self.teacher_spec, inputs.dataset, self.weights, self.norm))

    def term(self, b: CrossBatch, model) -> Terms:
        if self.scores is None or b.caption_idx is None:
            raise ValueError("distill needs the batch's caption indices (fit() passes them) and bind(inputs)")
        cap = gather_with_grad(b.caption_idx.to(b.clip_ids.device)).cpu()       # (G,)
        block = self.scores[cap][:, b.clip_ids.cpu()].to(b.text_emb.device)      # (G, G) caption x clip
        target = correspondence_targets(block, self.temperature)
        scale = b.logit_scale if self.student_temperature is None else 1.0 / self.student_temperature
        logits = scale * b.text_emb @ b.audio_emb.T                              # (G, G) text x audio
        t2a = -(target["t2a"] * F.log_softmax(logits, dim=1)).sum(1).mean()
        a2t = -(target["a2t"] * F.log_softmax(logits.T, dim=1)).sum(1).mean()
        return {"distill": 0.5 * (t2a + a2t)}
