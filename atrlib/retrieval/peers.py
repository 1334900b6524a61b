"""Public models a researcher compares with, as retrievers beside their own runs.

- ``hf-clap:<hub id or folder>`` — any transformers ``ClapModel`` (LAION CLAP, e.g.
  ``laion/clap-htsat-unfused`` or ``laion/larger_clap_general``) with its feature extractor and
  tokenizer: ``python -m atrlib evaluate --system hf-clap:laion/clap-htsat-unfused --dataset clotho
  --root DIR --split evaluation --out reports/laion-clap`` scores it with CIs and both protocols,
  and its folder joins 05's ensembles like any run's.
- ``msclap:<version or weights file>`` — Microsoft CLAP through its own package (``pip install
  msclap``; it needs torchaudio), versions ``2022``, ``2023``, ``clapcap``.

Audio longer than the model's window (10 s for LAION CLAP) is embedded as the mean of its
consecutive windows (the last one repeat-padded), so every second of a clip counts and the
embedding is the same on every run (the feature extractor's own ``rand_trunc`` / ``fusion`` pick
random crops). Embeddings are cached per file content like every retriever's.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch

from atrlib.retrieval.retrievers import RETRIEVERS, Retriever


class HFClapRetriever(Retriever):
    """A transformers ``ClapModel`` (hub id or a local folder holding the model, its feature
    extractor and tokenizer)."""

    name = "hf-clap"

    def __init__(self, model: str = "laion/clap-htsat-unfused", device: str = "cpu", batch_size: int = 8, cache=None):
        from transformers import AutoFeatureExtractor, AutoTokenizer, ClapModel

        from atrlib.errors import WeightsNotFoundError

        self.model_id, self.device, self.batch_size = str(model), device, int(batch_size)
        try:
            self.model = ClapModel.from_pretrained(self.model_id).to(device).eval()
            self.features = AutoFeatureExtractor.from_pretrained(self.model_id)
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_id)
        except OSError as e:
            raise WeightsNotFoundError(
                f"hf-clap:{self.model_id}: no ClapModel with its feature extractor and tokenizer there "
                f"({str(e).splitlines()[0]}). Give a Hugging Face hub id (needs the network once, then the hub "
                "cache) or a folder written by save_pretrained of ClapModel, ClapFeatureExtractor and a tokenizer") from e
        self.sample_rate = int(self.features.sampling_rate)
        self.window = int(getattr(self.features, "nb_max_samples", 10 * self.sample_rate))
        self.name = f"hf-clap:{Path(self.model_id).name or self.model_id}"
        super().__init__(cache)

    def audio_settings(self) -> dict:
        h = hashlib.sha256()
        for k, v in sorted(self.model.state_dict().items())[:8]:  # enough to tell checkpoints apart
            h.update(k.encode())
            h.update(v.detach().cpu().float().numpy().tobytes()[:4096])
        return {"model": self.model_id, "weights": h.hexdigest()[:16], "rate": self.sample_rate, "window": self.window}

    def _windows(self, wave: np.ndarray) -> List[np.ndarray]:
        n = max(1, int(np.ceil(len(wave) / self.window)))
        out = []
        for i in range(n):
            w = wave[i * self.window:(i + 1) * self.window]
            if len(w) < self.window:  # repeat-pad the last window, as the extractor's "repeatpad" does
                reps = int(np.ceil(self.window / max(1, len(w))))
                w = np.tile(w if len(w) else np.zeros(1, np.float32), reps)[: self.window]
            out.append(w.astype(np.float32))
        return out

    @torch.no_grad()
    def compute_audio(self, path) -> np.ndarray:
        from atrlib.audio.io import load_audio

        wave, _ = load_audio(path, sample_rate=self.sample_rate)
        embs = []
        windows = self._windows(np.asarray(wave, dtype=np.float32))
        for i in range(0, len(windows), self.batch_size):
            x = self.features(windows[i:i + self.batch_size], sampling_rate=self.sample_rate, return_tensors="pt",
                              truncation="rand_trunc", padding="repeatpad")  # each window fits: no crop is drawn
            x = {k: v.to(self.device) for k, v in x.items()}
            embs.append(_tensor(self.model.get_audio_features(**x)).float().cpu().numpy())
        return np.concatenate(embs).mean(axis=0).astype(np.float32)

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 64):
            t = self.tokenizer(list(texts[i:i + 64]), padding=True, truncation=True, return_tensors="pt")
            t = {k: v.to(self.device) for k, v in t.items() if k in ("input_ids", "attention_mask")}
            out.append(_tensor(self.model.get_text_features(**t)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, int(self.model.config.projection_dim)), np.float32)


def _tensor(x):
    """transformers 5 may return an output object from get_*_features: its pooled embedding."""
    if isinstance(x, torch.Tensor):
        return x
    for k in ("pooler_output", "text_embeds", "audio_embeds"):
        if getattr(x, k, None) is not None:
            return getattr(x, k)
    return x[0]


class MSClapRetriever(Retriever):
    """Microsoft CLAP through its package (``msclap``), by version or a weights file."""

    name = "msclap"

    def __init__(self, model: str = "2023", device: str = "cpu", cache=None):
        from atrlib.errors import ConfigError

        try:
            from msclap import CLAP
        except ImportError as e:
            raise ConfigError("msclap:<version> needs Microsoft's package: pip install msclap (it requires "
                              "torchaudio, which has no build for every torch); or compare with LAION CLAP through "
                              "hf-clap:laion/clap-htsat-unfused") from e
        use_cuda = device != "cpu" and torch.cuda.is_available()
        p = Path(str(model))
        self.clap = CLAP(model_fp=str(p), use_cuda=use_cuda) if p.is_file() else CLAP(version=str(model), use_cuda=use_cuda)
        self.model_id = str(model)
        self.name = f"msclap:{self.model_id}"
        super().__init__(cache)

    def audio_settings(self) -> dict:
        return {"model": self.model_id}

    def compute_audio(self, path) -> np.ndarray:
        return np.asarray(self.clap.get_audio_embeddings([str(path)]), dtype=np.float32)[0]

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.clap.get_text_embeddings(list(texts)), dtype=np.float32)


@RETRIEVERS.register("hf-clap")
def hf_clap(model: str = "laion/clap-htsat-unfused", **kw) -> HFClapRetriever:
    """LAION CLAP (any transformers ClapModel): ``--system hf-clap:<hub id or folder>``."""
    return HFClapRetriever(model, **kw)


@RETRIEVERS.register("msclap")
def msclap(model: str = "2023", **kw) -> MSClapRetriever:
    """Microsoft CLAP (the msclap package): ``--system msclap:<2022|2023|clapcap|weights file>``."""
    return MSClapRetriever(model, **kw)
