"""The dual encoder: an audio tower and a text tower, each with a projection head into one
L2-normalised space, scored by cosine similarity with a learnable temperature.

Models are built by name from the small JSON files in ``atrlib/model_configs/``::

    model = create_model("synth-small-minilm")               # a shipped config
    model = create_model("cnn14-bert", embed_dim=1024)       # ... with overrides
    model = create_model({"audio": {"name": "aisfx", "pretrained": True, "frozen": True}, ...})

A *frozen* tower never trains and always runs in eval mode; training then precomputes its
outputs once (:mod:`atrlib.audio.embeddings`) and only the heads learn — the CPU-friendly mode.

Saving (:func:`save_model`) writes ``config.json`` + ``model.safetensors``: the heads, the
logit scale and every trainable (or randomly initialised) tower. Frozen pretrained towers are
not stored — :func:`load_model` rebuilds them from their weights file or model id, exactly as
training saw them. Loading never unpickles: a checkpoint cannot run code.

Shipped configs (``model_config_names()``): ``synth-tiny`` (tests), ``synth-small-minilm``,
``synth-stats-minilm`` (the demo's CPU default), ``efficientat-minilm`` / ``aisfx-minilm``
(frozen towers, heads only), ``cnn14-bert`` / ``cnn14-roberta`` (end to end, a GPU config).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.config import option
from atrlib.models.heads import build_head
from atrlib.paths import PACKAGE_DIR
from atrlib.registry import name_or_path

CONFIG_DIR = PACKAGE_DIR / "model_configs"
RANDOM_TOWER_SEED = 0  # pretrained=False: frozen towers are built under this seed, so a load rebuilds them


@dataclass
class TowerConfig:
    name: str = option(help="AUDIO_TOWERS / TEXT_TOWERS registry name, e.g. 'cnn14', 'minilm'")
    kwargs: Dict[str, Any] = option(factory=dict, help="keyword arguments for the tower factory")
    pretrained: Any = option(None, "audio: True (published weights), a weights path, or None (random init)")
    frozen: bool = option(False, "no gradients, always eval mode; training precomputes its outputs once")


@dataclass
class ModelConfig:
    name: str = option("custom", "label stored with the model (the config file's stem)")
    audio: TowerConfig = option(factory=lambda: TowerConfig("small-cnn"), help="the audio tower")
    text: TowerConfig = option(factory=lambda: TowerConfig("minilm", frozen=True), help="the text tower")
    head: str = option("mlp", "projection heads: 'linear' or 'mlp' (Linear-ReLU-Dropout-Linear)")
    head_hidden: int = option(512, "hidden units of the MLP heads")
    head_dropout: float = option(0.1, "dropout inside the MLP heads")
    embed_dim: int = option(256, "size of the shared embedding space")
    init_temperature: float = option(0.07, "initial softmax temperature (logit scale 1 / 0.07)")
    learn_temperature: bool = option(True, "learn the temperature (logit scale clamped at 100)")
    max_audio_seconds: float = option(10.0, "audio is cropped / zero-padded to this many seconds")
    heads: Dict[str, Any] = option(factory=dict, help="extra heads for cross-modal objectives, name -> kwargs "
                                   "(atrlib.models.fusion: crossattn, qformer, image); objectives add them")
    audio_cfg: Dict[str, Any] = option(factory=dict, help="the audio tower's front end (as open_clip's audio_cfg): "
                                       "sample_rate, window_size, hop_size, mel_bins, fmin, fmax for PANNs towers; "
                                       "{} = the tower's published front end")
    audio_frontend: Dict[str, Any] = option(factory=dict, help="tower-independent front-end options "
                                            "(atrlib.models.clip_frontend.AudioFrontendConfig: segment_seconds, "
                                            "max_seconds, segment_pool, train_crop_seconds, spec_*); {} = none")
    pretrained: bool = option(True, "False: every tower and extra head at its full size with random weights, "
                                    "nothing downloaded (dry runs, cost; atrlib.models.offline_hf); frozen towers "
                                    "are then seeded and rebuilt on load, the rest is stored")

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


def _build_tower(kind: str, tc: TowerConfig, audio_cfg: Optional[Dict[str, Any]] = None,
                 pretrained: bool = True) -> nn.Module:
    """The tower ``tc``; ``pretrained=False`` (the model config's): random weights, offline."""
    from atrlib.models.towers import AUDIO_TOWERS, TEXT_TOWERS

    reg = AUDIO_TOWERS if kind == "audio" else TEXT_TOWERS
    kw = dict(tc.kwargs)
    if kind == "text" and not pretrained:
        kw["pretrained"] = False
    if kind == "audio":
        kw["pretrained"] = tc.pretrained if pretrained else None
        clash = sorted(set(audio_cfg or {}) & set(kw))
        if clash:
            raise ValueError(f"front-end field(s) {clash} are set both in audio_cfg and in audio.kwargs; keep one")
        kw.update(audio_cfg or {})
    if not pretrained and tc.frozen:  # a frozen random tower: seeded, so a load rebuilds it (not stored)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_TOWER_SEED)
            tower = reg.get(tc.name)(**kw)
    else:
        tower = reg.get(tc.name)(**kw)
    if tc.frozen:
        for p in tower.parameters():
            p.requires_grad_(False)
        tower.eval()
    return tower


class DualEncoder(nn.Module):
    """Audio tower + text tower, each followed by a head into one normalised space.

    ``encode_audio(wave (batch, samples)) -> (batch, embed_dim)`` and
    ``encode_text(list of str) -> (batch, embed_dim)`` run tower and head;
    ``project_audio`` / ``project_text`` run the heads alone on tower features (the path a
    frozen tower's precomputed outputs take). Similarity = ``text_emb @ audio_emb.T``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        from atrlib.models.clip_frontend import wrap_audio_tower

        self.audio_tower = wrap_audio_tower(_build_tower("audio", config.audio, config.audio_cfg, config.pretrained),
                                            config.audio_frontend)
        self.text_tower = _build_tower("text", config.text, pretrained=config.pretrained)
        c = config
        head_kw = dict(hidden=c.head_hidden, dropout=c.head_dropout)
        self.audio_head = build_head(c.head, self.audio_tower.embed_dim, c.embed_dim, **head_kw)
        self.text_head = build_head(c.head, self.text_tower.embed_dim, c.embed_dim, **head_kw)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / c.init_temperature)),
                                      requires_grad=c.learn_temperature)
        self.extra_heads = nn.ModuleDict()
        for name, kw in c.heads.items():
            self.add_head(name, kw)

    def add_head(self, name: str, kwargs: Dict[str, Any]) -> nn.Module:
        """Build the extra head ``name`` (:mod:`atrlib.models.fusion`) and record it in the config,
        so :func:`save_model` / :func:`load_model` keep it."""
        from atrlib.models.fusion import build_extra_head

        head = build_extra_head(name, kwargs, self)
        self.extra_heads[name] = head
        self.config = replace(self.config, heads={**self.config.heads, name: dict(kwargs)})
        return head

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
        """Parameter counts, total and trainable, per part and overall."""
        parts = {"audio_tower": self.audio_tower, "text_tower": self.text_tower,
                 "audio_head": self.audio_head, "text_head": self.text_head, **self.extra_heads}
        out = {k: {"params": sum(p.numel() for p in m.parameters()),
                   "trainable": sum(p.numel() for p in m.parameters() if p.requires_grad)} for k, m in parts.items()}
        out["total"] = {"params": sum(p.numel() for p in self.parameters()),
                        "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad)}
        return out


def model_config_names() -> List[str]:
    """Names of the shipped configs (the file stems in ``atrlib/model_configs/``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def get_model_config(name_or_config: Union[str, Path, Dict[str, Any], ModelConfig], **overrides) -> ModelConfig:
    """A shipped config by name, a JSON path, a dict, or a config; ``overrides`` replace fields
    (``audio``/``text`` overrides may be partial dicts, merged into the tower config, and
    their ``kwargs`` merged into the tower's kwargs)."""
    if isinstance(name_or_config, ModelConfig):
        cfg = name_or_config
    elif isinstance(name_or_config, dict):
        cfg = ModelConfig.from_dict(name_or_config)
    else:
        kind, key = name_or_path(name_or_config, model_config_names(), "model config", suffixes=(".json",))
        p = CONFIG_DIR / f"{key}.json" if kind == "name" else Path(key)
        d = json.loads(p.read_text())
        d.setdefault("name", p.stem)
        cfg = ModelConfig.from_dict(d)
    from dataclasses import fields

    from atrlib.errors import ConfigError

    def unknown(obj, keys, where):
        names = [f.name for f in fields(obj)]
        bad = [k for k in keys if k not in names]
        if bad:
            raise ConfigError(f"model_overrides: {where} has no field {', '.join(map(repr, bad))}; its fields are "
                              f"{', '.join(names)} (tower arguments go under 'kwargs', e.g. "
                              f"{{'audio': {{'kwargs': {{'segments': 2}}}}}})")

    unknown(cfg, overrides, f"the model config {cfg.name!r}")
    for k in ("audio", "text"):
        if isinstance(overrides.get(k), dict):
            part = dict(overrides[k])
            unknown(getattr(cfg, k), part, f"the {k} tower config")
            if isinstance(part.get("kwargs"), dict):  # tower kwargs merge: {"kwargs": {"segments": 2}}
                part["kwargs"] = {**getattr(cfg, k).kwargs, **part["kwargs"]}
            overrides[k] = replace(getattr(cfg, k), **part)
    return replace(cfg, **overrides) if overrides else cfg


def create_model(name_or_config: Union[str, Path, Dict[str, Any], ModelConfig], **overrides) -> DualEncoder:
    """Build a :class:`DualEncoder` by name (see :func:`model_config_names`), path, dict or config."""
    return DualEncoder(get_model_config(name_or_config, **overrides))


def _rebuilt_on_load(model: DualEncoder) -> List[str]:
    """State-dict prefixes :func:`save_model` leaves out: frozen towers whose weights come from
    outside the checkpoint — ``pretrained`` set, or a text tower that loaded a published model
    by name (it has ``name_or_path``). They never change in training, so rebuilding them from
    the config gives the same weights. A frozen *randomly initialised* tower is stored — except
    under the model config's ``pretrained=False``, where frozen towers are built under
    :data:`RANDOM_TOWER_SEED` and rebuilt identically (trainable ones are always stored)."""
    skip = []
    if not model.config.pretrained:
        return [f"{part}_tower." for part, tc in (("audio", model.config.audio), ("text", model.config.text))
                if tc.frozen]
    for part, tc in (("audio", model.config.audio), ("text", model.config.text)):
        tower = getattr(model, f"{part}_tower")
        if tc.frozen and (tc.pretrained not in (None, False) or getattr(tower, "name_or_path", None)):
            skip.append(f"{part}_tower.")
    return skip


def model_state(model: DualEncoder) -> Dict[str, torch.Tensor]:
    """The tensors :func:`save_model` stores: heads, logit scale, and every tower that is
    trainable or randomly initialised."""
    skip = _rebuilt_on_load(model)
    out, seen = {}, set()
    for k, v in model.state_dict().items():
        if any(k.startswith(s) for s in skip):
            continue
        v = v.detach().cpu().contiguous()
        ptr = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)) if v.numel() else None
        out[k] = v.clone() if ptr in seen else v  # a tied tensor (BEATs' shared position table) is stored
        seen.add(ptr)                             # under each name: safetensors refuses shared memory
    return out


def save_model(model: DualEncoder, out_dir: Union[str, Path]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (:func:`model_state`) into ``out_dir``
    (created). Frozen pretrained towers are not stored: :func:`load_model` rebuilds them from
    the config, so a frozen-mode checkpoint holds only the heads (a few MB)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2, default=str))
    save_file(model_state(model), str(out / "model.safetensors"))
    return out


def load_model(model_dir: Union[str, Path], map_location: str = "cpu") -> DualEncoder:
    """Rebuild a model from :func:`save_model`'s folder (safetensors only: loading a
    checkpoint never runs code), in eval mode as for inference (call ``.train()`` to train on)."""
    from safetensors.torch import load_file

    d = Path(model_dir)
    if not (d / "config.json").exists() or not (d / "model.safetensors").exists():
        raise FileNotFoundError(f"{d}: not a saved model (needs config.json and model.safetensors)")
    model = DualEncoder(ModelConfig.from_dict(json.loads((d / "config.json").read_text())))
    load_into(model, load_file(str(d / "model.safetensors"), device=map_location))
    return model.eval()


def load_into(model: DualEncoder, state: Dict[str, torch.Tensor], new_heads: bool = False) -> None:
    """Load a stored state: every stored key must fit, and every key not stored must belong
    to a tower that is rebuilt on load — or, with ``new_heads=True`` (two-stage training: a
    stage-2 objective adds a matching head or Q-Former to a stage-1 model), to an extra head,
    which keeps its fresh initialisation."""
    skip = list(_rebuilt_on_load(model)) + (["extra_heads."] if new_heads else [])
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise RuntimeError(f"checkpoint does not fit this model ({model.config.name}): {e}") from None
    missing = [k for k in missing if not any(k.startswith(s) for s in skip)]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}")
