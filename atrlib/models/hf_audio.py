"""``hf-audio``: any transformers audio encoder, by hub id or local folder, as an audio tower.

    wave (batch, samples) at the feature extractor's rate
      -> the model's own feature extractor (``AutoFeatureExtractor``: raw-wave normalisation for
         wav2vec2 / HuBERT / WavLM, Kaldi fbank for AST, log-mel for CLAP / Whisper, ...),
         each clip cut to its real length first, then padded as that extractor pads
      -> the model (``AutoModel``, or ``model_class`` e.g. "ClapAudioModel")
      -> hidden states of ``layer`` (-1 = last)           (batch, tokens, hidden)  = forward_frames
      -> pooling: "mean" / "max" over valid tokens, or "cls" (the first token)    (batch, hidden)

Valid tokens: when the model maps input lengths to output lengths
(``_get_feat_extract_output_lengths``: wav2vec2-style models) the mask follows each clip's
real length; otherwise (AST, CLAP: fixed-size inputs) every token counts.

The feature extractor runs in numpy on the CPU, so gradients reach the model's weights but not
the waveform (towers never need that). Weights load with ``from_pretrained``: safetensors, or
the library's own ``weights_only`` loading — no arbitrary unpickling.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from atrlib.models.frames import frames_mask, pool_frames
from atrlib.models.towers import AUDIO_TOWERS

POOLINGS = ("mean", "max", "cls")


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


class HFAudioTower(nn.Module):
    """A transformers audio model with its feature extractor.

    Parameters
    ----------
    name_or_path: hub id (``"MIT/ast-finetuned-audioset-10-10-0.4593"``) or a local folder holding
        ``config.json``, the weights and ``preprocessor_config.json``.
    pooling: ``"mean"`` / ``"max"`` over valid tokens, or ``"cls"`` (the first token).
    layer: which hidden states to use (-1 = the last layer's output; 0 = the embeddings).
    model_class: a transformers class name for models whose ``AutoModel`` is not the audio
        encoder alone (e.g. ``"ClapAudioModel"``); None = ``AutoModel``.
    freeze: no gradients and always eval mode.
    local_files_only: None = only for a local folder or when ``$HF_HUB_OFFLINE`` is set.

    Attributes: ``sample_rate`` (the extractor's), ``embed_dim`` = ``frame_dim`` (hidden size).
    """

    def __init__(self, name_or_path: str | Path, pooling: str = "mean", layer: int = -1,
                 model_class: Optional[str] = None, freeze: bool = False, local_files_only: Optional[bool] = None):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
        import transformers
        from transformers import AutoFeatureExtractor, AutoModel

        self.name_or_path, self.pooling, self.layer, self.frozen = str(name_or_path), pooling, int(layer), freeze
        local = Path(self.name_or_path).expanduser().is_dir()
        if local_files_only is None:
            local_files_only = local or _hf_offline()
        cls = AutoModel if model_class is None else getattr(transformers, model_class, None)
        if cls is None:
            raise ValueError(f"transformers has no class {model_class!r} (model_class=...)")
        try:
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(self.name_or_path,
                                                                          local_files_only=local_files_only)
            self.model = cls.from_pretrained(self.name_or_path, local_files_only=local_files_only)
        except (OSError, ValueError) as e:
            where = "this folder" if local else "the Hugging Face hub or its local cache"
            raise OSError(
                f"cannot load audio model {self.name_or_path!r} from {where}: {type(e).__name__}: {e}\n"
                f"On a machine with internet run `hf download {self.name_or_path}` to fill the cache ($HF_HOME), "
                "or pass a local folder with config.json, the weights and preprocessor_config.json."
            ) from e
        cfg = self.model.config
        hidden = getattr(cfg, "hidden_size", None) or getattr(getattr(cfg, "audio_config", None), "hidden_size", None)
        if hidden is None:
            raise ValueError(f"{self.name_or_path}: its config has no hidden_size; is it an audio encoder?")
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.embed_dim = self.frame_dim = int(hidden)
        if freeze:
            for p in self.model.parameters():
                p.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> "HFAudioTower":
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def extract(self, wave: torch.Tensor, lengths: Optional[Sequence[int]] = None) -> dict:
        """The model inputs for waves (batch, samples) cut to ``lengths``, on the model's device."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                         # (batch, samples)
        n = wave.shape[1]
        lengths = [n] * wave.shape[0] if lengths is None else [int(x) for x in lengths]
        clips = [w[:l].detach().float().cpu().numpy() for w, l in zip(wave, lengths)]
        inputs = self.feature_extractor(clips, sampling_rate=self.sample_rate, return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in inputs.items()}

    def forward_frames(self, wave: torch.Tensor, lengths: Optional[torch.Tensor] = None
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(hidden states (batch, tokens, hidden), mask (batch, tokens) bool, True = valid)."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                         # (batch, samples)
        n = torch.full((wave.shape[0],), wave.shape[1]) if lengths is None else torch.as_tensor(lengths).cpu()
        inputs = self.extract(wave, n.tolist())
        out = self.model(**inputs, output_hidden_states=self.layer != -1)
        hidden = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]  # (batch, tokens, hidden)
        b, t = hidden.shape[:2]
        if hasattr(self.model, "_get_feat_extract_output_lengths"):       # wav2vec2-style: tokens follow lengths
            valid = self.model._get_feat_extract_output_lengths(n.long())    # (batch,)
            mask = torch.arange(t)[None, :] < valid[:, None]               # (batch, tokens)
            mask[:, 0] = True
            return hidden, mask.to(hidden.device)
        return hidden, frames_mask(None, b, t, 1, hidden.device)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        frames, mask = self.forward_frames(wave)                             # (batch, tokens, hidden), (batch, tokens)
        return pool_frames(frames, mask, self.pooling)                       # (batch, hidden)

    def extra_repr(self) -> str:
        return (f"name_or_path={self.name_or_path!r}, pooling={self.pooling!r}, layer={self.layer}, "
                f"frozen={self.frozen}, sample_rate={self.sample_rate}, embed_dim={self.embed_dim}")


@AUDIO_TOWERS.register("hf-audio")
def hf_audio(name_or_path: str | Path = "MIT/ast-finetuned-audioset-10-10-0.4593", pooling: str = "mean",
             layer: int = -1, model_class: Optional[str] = None, pretrained=None, **kw) -> HFAudioTower:
    """Any transformers audio encoder (AST, wav2vec2 / HuBERT / WavLM, CLAP's audio model with
    ``model_class="ClapAudioModel"``, ...) by hub id or local folder. The weights always come from
    ``name_or_path``; ``pretrained`` is accepted for the common tower signature and must not be a
    different file."""
    if isinstance(pretrained, (str, Path)):
        raise ValueError("hf-audio loads its weights from name_or_path; pass the folder there, not pretrained=")
    return HFAudioTower(name_or_path, pooling=pooling, layer=layer, model_class=model_class, **kw)
