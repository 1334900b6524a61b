"""The parts of the challenge's evaluation that run outside Python: the Stanford PTB
tokenizer, METEOR and SPICE (Java programs), and FENSE / SPIDEr-FL (two neural models), each
found on this machine or reported missing with the reason and the command that fixes it.

Where the files come from, first found wins:

- the folder ``aac-metrics-download`` fills (``$AAC_METRICS_CACHE_PATH`` or ``~/.cache``, the
  layout ``aac-metrics/{stanford_nlp,meteor,spice}/``);
- the ``pycocoevalcap`` package (PyPI), which ships ``stanford-corenlp-3.4.1.jar``,
  ``meteor-1.5.jar`` with its English paraphrase table, and ``spice-1.0.jar`` without the
  Stanford CoreNLP 3.6.0 jars SPICE needs (those only ``aac-metrics-download`` or
  pycocoevalcap's ``get_stanford_models.sh`` fetch, from the internet).

The Java clients mirror pycocoevalcap 1.2's ``PTBTokenizer``, ``Meteor`` and ``Spice`` (the
same commands and protocol; ``tests/captioning`` holds the tokenizer and METEOR equal to
them). Java is ``$AAC_METRICS_JAVA_PATH``, ``$JAVA_HOME/bin/java`` or ``java`` on the PATH; any
version that runs the jars is used (aac-metrics refuses Java above 13; METEOR 1.5 and the
tokenizer run on Java 17).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

PUNCTUATIONS = ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
                "...", ";"]  # removed after tokenizing, as coco-caption and aac-metrics do
CORENLP_341, METEOR_JAR, SPICE_JAR = "stanford-corenlp-3.4.1.jar", "meteor-1.5.jar", "spice-1.0.jar"
SPICE_CORENLP = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
FIX_JARS = ("pip install --no-deps pycocoevalcap==1.2   (ships the tokenizer and METEOR jars), or on a machine "
            "with internet: pip install aac-metrics && aac-metrics-download")
FIX_JAVA = "apt-get install -y default-jre-headless   (or set AAC_METRICS_JAVA_PATH to a java executable)"


def java_path() -> Optional[str]:
    for cand in (os.environ.get("AAC_METRICS_JAVA_PATH"),
                 os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else None,
                 shutil.which("java")):
        if cand and (shutil.which(cand) or Path(cand).is_file()):
            return str(cand)
    return None


def _search_dirs(kind: str) -> List[Path]:
    """Folders that may hold the ``kind`` jars (stanford_nlp / meteor / spice)."""
    out = []
    root = os.environ.get("AAC_METRICS_CACHE_PATH") or os.path.join(os.path.expanduser("~"), ".cache")
    out.append(Path(root) / "aac-metrics" / kind)
    try:
        import importlib.util

        spec = importlib.util.find_spec("pycocoevalcap")
        if spec is not None and spec.submodule_search_locations:
            pkg = Path(list(spec.submodule_search_locations)[0])
            out.append(pkg / {"stanford_nlp": "tokenizer", "meteor": "meteor", "spice": "spice"}[kind])
    except (ImportError, ValueError):
        pass
    return out


def find_jar(kind: str, name: str) -> Optional[Path]:
    return next((d / name for d in _search_dirs(kind) if (d / name).is_file()), None)


def status() -> Dict[str, Dict[str, object]]:
    """What can run here: ``{"ptb_tokenizer" | "meteor" | "spice" | "fense": {"ok", "reason", "fix"}}``."""
    java = java_path()
    out: Dict[str, Dict[str, object]] = {}

    def need(key, jars: Sequence[Tuple[str, str]], extra: str = ""):
        missing = [name for kind, name in jars if find_jar(kind, name) is None]
        if java is None:
            out[key] = {"ok": False, "reason": "no Java on this machine", "fix": FIX_JAVA}
        elif missing:
            out[key] = {"ok": False, "reason": f"{', '.join(missing)} not found (looked in "
                        f"{', '.join(str(d) for d in _search_dirs(jars[0][0]))}){extra}", "fix": FIX_JARS}
        else:
            out[key] = {"ok": True, "reason": "", "fix": ""}

    need("ptb_tokenizer", [("stanford_nlp", CORENLP_341)])
    need("meteor", [("meteor", METEOR_JAR), ("meteor", "data/paraphrase-en.gz")])
    spice_dir = find_jar("spice", SPICE_JAR)
    need("spice", [("spice", SPICE_JAR)] + [("spice", f"lib/{j}") for j in SPICE_CORENLP],
         "; SPICE parses captions with Stanford CoreNLP 3.6.0, which no package on PyPI or Debian ships"
         if spice_dir is not None else "")
    if not out["spice"]["ok"]:
        out["spice"]["fix"] = ("on a machine with internet: pip install aac-metrics && aac-metrics-download "
                               "(fetches SPICE-1.0 and Stanford CoreNLP 3.6.0), then copy ~/.cache/aac-metrics here")
    out["fense"] = fense_status()
    return out


def fense_status() -> Dict[str, object]:
    """FENSE needs aac-metrics, the Sentence-BERT model paraphrase-TinyBERT-L6-v2 and the
    fluency-error detector echecker_clotho_audiocaps_base.ckpt on this machine."""
    fix = ("on a machine with internet: pip install aac-metrics && aac-metrics-download (fetches "
           "paraphrase-TinyBERT-L6-v2 and echecker_clotho_audiocaps_base.ckpt), then copy ~/.cache/torch/hub/fense_data "
           "and the Hugging Face cache here")
    try:
        import aac_metrics  # noqa: F401
        import torch
        from huggingface_hub import try_to_load_from_cache
    except ImportError as e:
        return {"ok": False, "reason": f"{e.name} is not installed", "fix": "pip install 'atrlib[captioning]'"}
    ckpt = Path(torch.hub.get_dir()) / "fense_data" / "echecker_clotho_audiocaps_base.ckpt"
    sbert = try_to_load_from_cache("sentence-transformers/paraphrase-TinyBERT-L6-v2", "config.json")
    missing = ([] if isinstance(sbert, str) else ["the Sentence-BERT model paraphrase-TinyBERT-L6-v2"]) + \
        ([] if ckpt.is_file() else [f"the fluency-error detector {ckpt}"])
    if missing:
        return {"ok": False, "reason": f"{' and '.join(missing)} not on this machine (offline: no download)", "fix": fix}
    return {"ok": True, "reason": "", "fix": ""}


# ----------------------------------------------------------------------------- PTB tokenizer
def ptb_tokenize(sentences: Sequence[str]) -> List[str]:
    """coco-caption's PTBTokenizer: Stanford CoreNLP 3.4.1 (lower case, one line each), then
    its punctuation tokens removed; words joined by one space."""
    jar = find_jar("stanford_nlp", CORENLP_341)
    java = java_path()
    if jar is None or java is None:
        raise FileNotFoundError(status()["ptb_tokenizer"]["reason"])
    if not sentences:
        return []
    text = "\n".join(s.replace("\n", " ") for s in sentences)
    with tempfile.NamedTemporaryFile("wb", delete=False, suffix=".txt") as f:
        f.write(text.encode())
        tmp = f.name
    try:
        cmd = [java, "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", tmp]
        out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode()
    finally:
        os.unlink(tmp)
    lines = out.split("\n")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS) for line in lines[:len(sentences)]]


# ----------------------------------------------------------------------------- METEOR
def meteor(candidates: Sequence[str], references: Sequence[Sequence[str]], resamples=None
           ) -> Tuple[float, List[float], List[float]]:
    """(corpus METEOR, per-clip METEOR, corpus METEOR of each resample) from meteor-1.5.jar, as
    pycocoevalcap's ``Meteor``: one SCORE line per clip, then one EVAL line with every clip's
    statistics (the corpus value aggregates the statistics, it is not the mean of the clips).
    ``resamples`` ((B, n) clip indices): the same EVAL over each resampled set of statistics,
    so a bootstrap interval is of the corpus value itself."""
    jar = find_jar("meteor", METEOR_JAR)
    java = java_path()
    if jar is None or java is None:
        raise FileNotFoundError(status()["meteor"]["reason"])
    cmd = [java, "-Duser.country=US", "-Duser.language=en", "-jar", "-Xmx2G", jar.name, "-", "-", "-stdio",
           "-l", "en", "-norm"]
    p = subprocess.Popen(cmd, cwd=str(jar.parent), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)

    def evaluate(rows: Sequence[str]) -> Tuple[List[float], float]:
        p.stdin.write(("EVAL ||| " + " ||| ".join(rows) + "\n").encode())
        p.stdin.flush()
        clips = [float(p.stdout.readline().strip()) for _ in rows]
        return clips, float(p.stdout.readline().strip())

    try:
        stats = []
        for cand, refs in zip(candidates, references):
            cand = cand.replace("|||", "").replace("  ", " ")
            p.stdin.write((" ||| ".join(("SCORE", " ||| ".join(refs), cand)) + "\n").encode())
            p.stdin.flush()
            stats.append(p.stdout.readline().decode().strip())
        per_clip, corpus = evaluate(stats)
        boot = [evaluate([stats[int(i)] for i in r])[1] for r in (resamples if resamples is not None else [])]
    finally:
        p.stdin.close()
        p.kill()
        p.wait()
    return corpus, per_clip, boot


# ----------------------------------------------------------------------------- SPICE
def spice(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> Tuple[float, List[float]]:
    """(corpus SPICE = mean F-score, per-clip F-scores) from spice-1.0.jar, as pycocoevalcap's
    ``Spice`` (a JSON file in, a JSON file out, ``-subset -silent``)."""
    st = status()["spice"]
    if not st["ok"]:
        raise FileNotFoundError(st["reason"])
    jar = find_jar("spice", SPICE_JAR)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps([{"image_id": i, "test": c, "refs": list(r)}
                                   for i, (c, r) in enumerate(zip(candidates, references))]))
        cache = Path(tmp) / "cache"
        cache.mkdir()
        subprocess.run([java_path(), "-jar", "-Xmx8G", str(jar), str(src), "-cache", str(cache), "-out", str(dst),
                        "-subset", "-silent"], cwd=str(jar.parent), check=True, capture_output=True)
        rows = {int(r["image_id"]): r for r in json.loads(dst.read_text())}
    per_clip = [float(rows[i]["scores"]["All"]["f"]) for i in range(len(candidates))]
    return (sum(per_clip) / len(per_clip) if per_clip else float("nan")), per_clip


# ----------------------------------------------------------------------------- FENSE, SPIDEr-FL
def fense(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> Tuple[float, List[float], List[float]]:
    """(corpus FENSE, per-clip FENSE, per-clip fluency error probability) through aac-metrics."""
    st = fense_status()
    if not st["ok"]:
        raise FileNotFoundError(st["reason"])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from aac_metrics.functional.fense import fense as _fense

    corpus, sents = _fense(list(candidates), [list(r) for r in references], return_all_scores=True)
    return (float(corpus["fense"]), [float(x) for x in sents["fense"]],
            [float(x) for x in sents.get("fer", sents.get("fluerr", [0.0] * len(candidates)))])
