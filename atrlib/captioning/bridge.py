"""The caption bridge: retrieval through generated captions. Every clip is captioned once
(cached per file content and captioner), and a query ranks clips by the text–text cosine
similarity between the query and each clip's caption under a text tower (MiniLM by default)::

    r = get_retriever("captionbridge", captioner="reports/demo/07_captioning/captioner")
    r.similarity(["a high beep"], paths)          # (1, clips)
    r.captions(paths)                             # what each clip was captioned

Registered in :data:`atrlib.retrieval.retrievers.RETRIEVERS` as ``captionbridge`` (through the
``atrlib.retrievers`` entry point), so ``atrlib search --system captionbridge`` and the
notebooks' ``resolve_retriever`` find it. ``captioner``: a trained captioner folder, several
(an ensemble of their log-probabilities), or ``"auto"`` (``$ATRLIB_CAPTIONER``, else the demo
run's 07_captioning captioner). Its E_A is the run the captioner was trained on (recorded in its folder).

:func:`bridge_matrix` scores a split from captions already generated (notebook 07), written as
``sim_<split>.npz`` so that the bridge joins the ensembles of 05 like any system.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np

from atrlib.retrieval.retrievers import RETRIEVERS, Retriever


def default_captioner() -> Path:
    """``auto``: ``$ATRLIB_CAPTIONER`` (a captioner or 07_captioning folder), else the demo run's
    captioner (``reports/demo/07_captioning/captioner``)."""
    import os

    from atrlib.errors import ConfigError
    from atrlib.paths import REPO_ROOT

    env = os.environ.get("ATRLIB_CAPTIONER")
    if env:
        for cand in (Path(env), Path(env) / "captioner"):
            if (cand / "captioner.json").is_file():
                return cand
        raise ConfigError(f"ATRLIB_CAPTIONER={env}: no captioner there (captioner.json, or captioner/ of a "
                          "07_captioning folder)")
    reports = REPO_ROOT / "reports" if (REPO_ROOT / "notebooks").is_dir() else Path.cwd() / "reports"
    cand = reports / "demo" / "07_captioning" / "captioner"  # as atrlib.runs.profiles.default_reports_dir
    if (cand / "captioner.json").is_file():
        return cand
    raise ConfigError(f"captionbridge: no captioner given and none at {cand}; run the 07_captioning stage "
                      "(make demo), pass captioner=FOLDER, or set ATRLIB_CAPTIONER=FOLDER (the command line's "
                      "search --system captionbridge reads it)")


_TOWERS: dict = {}


def text_embeddings(texts: Sequence[str], text_tower="minilm") -> np.ndarray:
    """(n, d) L2-normalised sentence embeddings of a text tower — a registered name (loaded once
    per process) or a tower already loaded (e.g. a run's own frozen MiniLM) — cached on disk per
    texts and tower (:func:`atrlib.audio.embeddings.text_tower_embeddings`)."""
    from atrlib.audio.embeddings import text_tower_embeddings, weights_hash
    from atrlib.models.towers import TEXT_TOWERS
    from atrlib.retrieval.retrievers import l2_normalize

    if isinstance(text_tower, str):
        if text_tower not in _TOWERS:
            _TOWERS[text_tower] = TEXT_TOWERS.get(text_tower)().eval()
        tower = _TOWERS[text_tower]
    else:
        tower = text_tower.eval()
    source = getattr(tower, "name_or_path", None)  # a published model: its name says which weights
    tid = {"tower": type(tower).__name__, "source": str(source), "settings": tower.extra_repr()} if source else \
        {"tower": type(tower).__name__, "weights": weights_hash(tower)}
    return l2_normalize(text_tower_embeddings(tower, tid, list(texts), progress=False))


def bridge_matrix(dataset, captions: Sequence[str], text_tower="minilm", system: str = "captionbridge"):
    """The text-to-audio :class:`~atrlib.retrieval.simfile.SimilarityMatrix` of ``dataset``'s
    captions against its clips' generated ``captions`` (one per clip, in clip order)."""
    from atrlib.retrieval.metrics import t2a_relevance
    from atrlib.retrieval.simfile import SimilarityMatrix

    if len(captions) != len(dataset):
        raise ValueError(f"{len(captions)} generated captions for {len(dataset)} clips")
    e = text_embeddings(list(dataset.captions_flat()) + list(captions), text_tower)
    q, c = e[:len(e) - len(captions)], e[len(e) - len(captions):]
    return SimilarityMatrix(sim=(q @ c.T).astype(np.float32), query_ids=dataset.caption_ids(),
                            item_ids=dataset.clip_ids, relevant=t2a_relevance(dataset.caption_clip_index()),
                            meta={"system": system, "dataset": dataset.name, "split": dataset.split,
                                  "direction": "t2a"})


class CaptionBridge(Retriever):
    """See the module docstring."""

    name = "captionbridge"

    def __init__(self, captioner="auto", text_tower: str = "minilm", beam_size: int = 3, length_penalty: float = 1.0,
                 device: str = "cpu", cache=None):
        from atrlib.audio.cache import FeatureCache
        from atrlib.captioning.model import load_captioner
        from atrlib.files import file_sha256

        folders = [default_captioner()] if captioner in ("auto", "", None) else \
            [Path(c) for c in (captioner if isinstance(captioner, (list, tuple)) else [captioner])]
        self.folders, self.device = folders, device
        self.models = [load_captioner(f, device) for f in folders]
        self.text_tower, self.beam_size, self.length_penalty = text_tower, int(beam_size), float(length_penalty)
        self._ids = [file_sha256(f / "captioner.safetensors")[:16] for f in folders]
        super().__init__(cache if cache is not None else FeatureCache(namespace="retriever-captionbridge"))

    def audio_settings(self) -> dict:
        return {"captioners": self._ids, "runs": [m.source.get("run") for m in self.models], "beam": self.beam_size, "lp": self.length_penalty,
                "max_tokens": self.models[0].cfg.max_tokens}

    def _caption_ids(self, paths: Sequence) -> List[np.ndarray]:
        from atrlib.captioning.decode import generate
        from atrlib.captioning.features import ClipList
        from atrlib.captioning.sources import caption_source

        src = caption_source([str(f) for f in self.folders], ClipList(paths), self.device)
        ids = generate(src, self.beam_size, self.length_penalty, self.models[0].cfg.max_tokens, as_ids=True)
        return [np.asarray(i, dtype=np.int64) for i in ids]

    def _audio_arrays(self, paths, progress: bool = True) -> List[np.ndarray]:
        """Each clip's caption (piece ids), captioned in batches; cached per file content."""
        settings = self.audio_settings()
        found, todo = self.cache.lookup(list(paths), settings)
        if todo:
            for i, ids in zip(todo, self._caption_ids([paths[i] for i in todo])):
                self.cache.put(self.cache.key(paths[i], settings), ids)
                found[i] = ids
        return found

    def compute_audio(self, path) -> np.ndarray:
        return self._caption_ids([path])[0]

    def captions(self, paths, progress: bool = False) -> List[str]:
        from atrlib.captioning.vocab import decode_ids

        tok = self.models[0].vocab.tokenizer
        return [decode_ids(tok, a.tolist()) for a in self._audio_arrays(list(paths), progress)]

    def finish_audio(self, arrays: List[np.ndarray]) -> np.ndarray:
        from atrlib.captioning.vocab import decode_ids

        tok = self.models[0].vocab.tokenizer
        return text_embeddings([decode_ids(tok, a.tolist()) for a in arrays], self.text_tower)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return text_embeddings(list(texts), self.text_tower)


@RETRIEVERS.register("captionbridge")
def captionbridge(**kw) -> CaptionBridge:
    return CaptionBridge(**kw)
