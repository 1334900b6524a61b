"""The on-disk embedding store: a collection's clip vectors, updated incrementally, searched by index.

The **store** is a folder, built incrementally by :func:`build_store` (``python -m atrlib
index build --model M --audio DIR --index STORE``)::

    STORE/store.json            model identity, dim, count, the files of the current generation, the index report
    STORE/clips-<gen>.csv       path, sha256 of the file's bytes, size, mtime_ns — one row per embedding
    STORE/embeddings-<gen>.npy  float16 (clips, dim), L2-normalised, read memory-mapped
    STORE/index-<gen>.faiss     the faiss index (IVF, IVF-PQ or HNSW; exact search needs none)

A re-run embeds only clips whose content is new (a file seen before with the same size and
mtime is not even re-read; a renamed or copied file reuses its vector by content hash),
drops clips whose file is gone, and writes a new generation; ``store.json`` is replaced
last (atomically), so a killed build leaves the previous store intact (the retriever's
feature cache keeps the network outputs computed so far).

A store cannot lie: a build refuses NaN / infinite vectors (naming the clip) and a folder
that is not a store (a training run, a folder of the user's own); ``store.json`` may only name
files inside the store folder, and every file it names is checked when the store is opened
(a corrupt, truncated or empty file is an error naming it); at query time each returned clip
is checked against the size and mtime recorded at build time — a deleted clip is skipped, a
changed one is listed with a ``note`` — and a store without clips says so.

The index kinds, and how a build tunes the search breadth to a target recall on held-out
clips, are in :mod:`atrlib.retrieval.index`; the chosen setting is stored in ``store.json``
and used by every later search (:meth:`EmbeddingStore.search`, :func:`search_index`).
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import re
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from atrlib.errors import StoreError
from atrlib.files import atomic_path, check_output, file_sha256, output_kind, read_json, write_json
from atrlib.retrieval.index import AnnIndex, IndexConfig, build_index, tune_index

STORE_VERSION = 1

__all__ = ["EmbeddingStore", "BuildReport", "build_store", "model_identity", "search_index"]


CLIP_FIELDS = ("path", "sha256", "size", "mtime_ns")
GENERATION_FILE = re.compile(r"^(embeddings|clips|index)-\d{8}-\d{6}-[0-9a-f]{6}\.(npy|csv|faiss)$")


def _store_file(root: Path, name, what: str) -> Path:
    """A file ``store.json`` names: a plain file name inside the store folder (no folders, no
    ``..``, no absolute path, no link leading out), else :class:`StoreError`."""
    meta = root / "store.json"
    if not isinstance(name, str) or not name or name != Path(name).name or name in (".", ".."):
        raise StoreError(f"{meta}: its {what} entry {name!r} is not a file name inside the store folder; a store only "
                         "names its own files. The store.json was edited or damaged: rebuild the store")
    path = root / name
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    if real.parent != base:
        raise StoreError(f"{meta}: its {what} {name!r} leads outside the store folder ({real}); rebuild the store")
    if not path.is_file():
        raise StoreError(f"{path}: the store's {what} file is missing; the store is incomplete — rebuild it with "
                         "`python -m atrlib index build`")
    if path.stat().st_size == 0:
        raise StoreError(f"{path}: the store's {what} file is empty (0 bytes); rebuild the store")
    return path


def model_identity(retriever) -> dict:
    """What a store's vectors depend on: the retriever's name, audio settings and config."""
    ident = {"name": getattr(retriever, "name", type(retriever).__name__)}
    if hasattr(retriever, "audio_settings"):
        ident["audio"] = retriever.audio_settings()
    cfg = getattr(retriever, "cfg", None)
    if cfg is not None:
        ident["config"] = asdict(cfg) if hasattr(cfg, "__dataclass_fields__") else cfg
    return json.loads(json.dumps(ident, sort_keys=True, default=str))


class EmbeddingStore:
    """An opened store: ``clips`` (paths), ``hashes``, ``embeddings`` (float16 memmap), ``info``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta = self.root / "store.json"
        if not meta.is_file():
            raise StoreError(f"{self.root}: no embedding store here (store.json missing); build one with "
                             f"`python -m atrlib index build --model M --audio DIR --index {self.root}`")
        try:
            self.info = read_json(meta)
        except (ValueError, UnicodeDecodeError) as e:
            raise StoreError(f"{meta}: not valid JSON ({e}); the store is damaged — rebuild it") from None
        if not isinstance(self.info, dict) or self.info.get("version") != STORE_VERSION:
            got = self.info.get("version") if isinstance(self.info, dict) else None
            raise StoreError(f"{meta}: store version {got} is not {STORE_VERSION}; rebuild it")
        try:
            dim, count = int(self.info["dim"]), int(self.info["count"])
        except (KeyError, TypeError, ValueError):
            raise StoreError(f"{meta}: no valid 'dim' / 'count'; the store is damaged — rebuild it") from None
        clips_file = _store_file(self.root, self.info.get("clips"), "clip list")
        try:
            with open(clips_file, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            self._stat = {r["path"]: (int(r["size"]), int(r["mtime_ns"]), r["sha256"]) for r in rows}
        except (KeyError, TypeError, ValueError, csv.Error) as e:
            raise StoreError(f"{clips_file}: not a clip list ({', '.join(CLIP_FIELDS)}): {e}; rebuild the store") from None
        self.clips = [r["path"] for r in rows]
        self.hashes = [r["sha256"] for r in rows]
        if len(rows) != count:
            raise StoreError(f"{clips_file}: {len(rows)} clips, but store.json says {count}; rebuild the store")
        self.embeddings = np.zeros((0, dim), np.float16)                                # (n, d) float16
        if self.clips:
            emb_file = _store_file(self.root, self.info.get("embeddings"), "embeddings")
            try:
                self.embeddings = np.load(emb_file, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise StoreError(f"{emb_file}: cannot be read as the store's embeddings ({e}); the file is corrupt or "
                                 "truncated — rebuild the store") from None
            if self.embeddings.shape != (count, dim):
                raise StoreError(f"{emb_file}: holds {self.embeddings.shape} vectors, but the store lists {count} "
                                 f"clips of dimension {dim}; rebuild the store")
        self._index = None

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def kind(self) -> str:
        return (self.info.get("index") or {}).get("kind", "exact")

    @property
    def index(self) -> AnnIndex:
        """The search index (read on first use; ``exact`` holds a float32 copy in memory)."""
        if self._index is None:
            rep = self.info.get("index") or {}
            path = _store_file(self.root, rep.get("file"), "index") if self.kind != "exact" else None
            if path is not None and rep.get("bytes") is not None and path.stat().st_size != int(rep["bytes"]):
                raise StoreError(f"{path}: {path.stat().st_size} bytes, but the build wrote {rep['bytes']}; the index "
                                 "file is truncated or was replaced — rebuild the store")
            self._index = AnnIndex.load(self.kind, path, self.embeddings)
            self._index.candidates = int((self.info.get("index") or {}).get("candidates") or self._index.candidates)
        return self._index

    def search(self, queries: np.ndarray, k: int = 10, breadth: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(scores (m, k), row ids (m, k)) for unit query vectors (m, d), best first."""
        b = breadth if breadth is not None else (self.info.get("index") or {}).get("breadth", 0)
        return self.index.search(queries, min(k, len(self)), b)


@dataclass
class BuildReport:
    store: str
    clips: int
    embedded: int  # vectors computed by the model in this build
    reused: int  # vectors kept from the previous store (same content)
    removed: int  # clips whose files are gone
    hashed: int  # files whose bytes were read to hash them (the others matched size + mtime)
    seconds: float
    index: dict = field(default_factory=dict)  # tune_index's report (kind, breadth, recall@10, ...)


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def build_store(root: str | Path, paths: Sequence[str | Path], embed: Callable[[List[str]], np.ndarray],
                identity: dict, cfg: Optional[IndexConfig] = None, batch_size: int = 256,
                progress: bool = True) -> BuildReport:
    """Create or update the store at ``root`` for the audio files ``paths`` (added to those
    already in it); see the module docstring. ``embed(paths) -> (n, d)`` is the model (e.g.
    ``retriever.embed_audio``); ``identity`` (:func:`model_identity`) must match the store's.
    """
    from tqdm.auto import tqdm

    cfg = cfg or IndexConfig()
    t_start = time.perf_counter()
    root = Path(root)
    if output_kind(root) != "store":  # a new or empty folder, or an existing store: never a run or a user's folder
        check_output(root, "store", what="--index", error=StoreError)
    old = EmbeddingStore(root) if (root / "store.json").is_file() else None
    if old is not None and old.info.get("model") != identity:
        raise StoreError(f"{root}: this store was built with another model or settings ({old.info.get('model', {}).get('name')}); "
                         "use another --index folder for this model")

    # 1. the clip list: previous clips whose file still exists, then the new paths
    wanted = list(dict.fromkeys([*(old.clips if old else []), *(str(Path(p).resolve()) for p in paths)]))
    present, removed = [], 0
    for p in wanted:
        if os.path.isfile(p):
            present.append(p)
        else:
            removed += 1
    # 2. content hashes: reuse a stored hash when size and mtime are unchanged
    hashes, stats, hashed = [], [], 0
    for p in tqdm(present, desc="hashing", disable=not progress, leave=False):
        st = os.stat(p)
        prev = old._stat.get(p) if old else None
        if prev and prev[0] == st.st_size and prev[1] == st.st_mtime_ns:
            h = prev[2]
        else:
            h, hashed = file_sha256(p), hashed + 1
        hashes.append(h)
        stats.append((st.st_size, st.st_mtime_ns))
    # 3. vectors: by content from the old store, else from the model
    by_hash = {h: i for i, h in enumerate(old.hashes)} if old else {}
    todo = [i for i, h in enumerate(hashes) if h not in by_hash]
    todo_unique = list(dict.fromkeys(hashes[i] for i in todo))
    first_of = {}
    for i in todo:
        first_of.setdefault(hashes[i], i)
    dim = int(old.info["dim"]) if old else None
    gen = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    emb_name, clips_name = f"embeddings-{gen}.npy", f"clips-{gen}.csv"
    new_vecs: Dict[str, np.ndarray] = {}
    bar = tqdm(total=len(todo_unique), desc="embedding", disable=not progress or not todo_unique)
    for s in range(0, len(todo_unique), batch_size):
        chunk = [present[first_of[h]] for h in todo_unique[s:s + batch_size]]
        raw = np.asarray(embed(chunk), dtype=np.float32)                                 # (batch, d)
        bad = [c for c, row in zip(chunk, raw) if not np.isfinite(row).all()]
        if bad:
            raise StoreError(f"{bad[0]}: the model gives a NaN or infinite vector for this clip"
                             + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                             + "; it would rank wrongly for every query. Check or remove the clip; nothing was written")
        v = _l2(raw)                                                                     # (batch, d)
        if dim is None:
            dim = v.shape[1]
        elif v.shape[1] != dim:
            raise ValueError(f"the model gives {v.shape[1]}-d vectors but the store holds {dim}-d ones")
        for h, row in zip(todo_unique[s:s + batch_size], v.astype(np.float16)):
            new_vecs[h] = row
        bar.update(len(chunk))
    bar.close()
    if dim is None:
        raise StoreError(f"{root}: no audio files to index")
    # 4. the new generation: embeddings, clip list, index, then store.json (the commit point)
    n = len(present)
    with atomic_path(root / emb_name, needed_bytes=n * dim * 2) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, dim))  # (n, d)
        for i, h in enumerate(hashes):
            out[i] = new_vecs[h] if h in new_vecs else old.embeddings[by_hash[h]]
        out.flush()
        del out
    with atomic_path(root / clips_name) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(CLIP_FIELDS)
            w.writerows((p, h, sz, mt) for p, h, (sz, mt) in zip(present, hashes, stats))
    x = np.load(root / emb_name, mmap_mode="r")
    index_report = _index_for(root, x, cfg, gen, progress)
    info = {"version": STORE_VERSION, "model": identity, "dim": dim, "dtype": "float16", "count": n,
            "embeddings": emb_name, "clips": clips_name, "updated": _dt.datetime.now().isoformat(timespec="seconds"),
            "index": index_report}
    write_json(root / "store.json", info)
    for f in root.iterdir():  # earlier generations (only files named as a build names them)
        if GENERATION_FILE.match(f.name) and gen not in f.name:
            f.unlink()
    report = BuildReport(str(root), n, len(todo_unique), n - len(todo), removed, hashed,
                         round(time.perf_counter() - t_start, 3), index_report)
    write_json(root / "build.json", report)
    return report


def _index_for(root: Path, x: np.ndarray, cfg: IndexConfig, gen: str, progress: bool) -> dict:
    """Build, tune and save the index of a store generation; returns its report."""
    n = len(x)
    kind = cfg.choose(n)
    rng = np.random.default_rng(cfg.seed)
    sample = np.sort(rng.choice(n, size=min(cfg.sample, max(1, n // 10)), replace=False)) if n > 1 else np.arange(n)
    t0 = time.perf_counter()
    if kind == "exact":
        return {"kind": "exact", "file": None, "breadth": 0, f"recall@{cfg.k}": 1.0, "build_s": 0.0,
                "note": "exact inner-product search: recall is 1 by construction"}
    if progress:
        print(f"building a {kind} index over {n} vectors ...", file=sys.stderr, flush=True)
    index = build_index(x, kind, cfg, exclude=sample)
    build_s = time.perf_counter() - t0
    rep = tune_index(index, x, sample, cfg)
    name = f"index-{gen}.faiss"
    with atomic_path(root / name) as tmp:
        index.save(tmp)
    rep.update({"file": name, "bytes": (root / name).stat().st_size, "build_s": round(build_s, 3),
                "params": {k: v for k, v in asdict(cfg).items()}})
    if kind in ("ivf", "ivfpq"):
        rep["nlist"] = int(index.nlist)
    if rep[f"recall@{cfg.k}"] < cfg.target_recall:
        rep["note"] = (f"recall@{cfg.k} {rep[f'recall@{cfg.k}']} stays below the target {cfg.target_recall} at the "
                       "largest breadth tried; consider --kind exact")
    return rep


# --------------------------------------------------------------------------------------
# searching a store with text
# --------------------------------------------------------------------------------------
def clip_note(store: EmbeddingStore, path: str) -> Optional[str]:
    """None when the clip at ``path`` is as it was at build time (size and mtime); ``"deleted"``
    when it is gone; else a note saying it changed (its vector describes the old content)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "deleted"
    size, mtime, _ = store._stat.get(path, (None, None, None))
    if (st.st_size, st.st_mtime_ns) != (size, mtime):
        return "changed since the store was built: its score is for the old content; rebuild the store"
    return None


def search_index(store: EmbeddingStore | str | Path, queries: Sequence[str], top: int = 10, retriever=None):
    """Top ``top`` clips of the store for each sentence: a table ``query, rank, file, score,
    path, note`` like :func:`atrlib.retrieval.search.rank`. The retriever defaults to the store's model.

    Each returned clip is checked against the size and mtime recorded at build time: a deleted
    clip is skipped (the next one moves up), a changed one keeps its place with a ``note``
    (its vector describes the old content). ``table.attrs["deleted"]`` lists the skipped clips.
    A store without clips, or whose returned clips are all deleted, is a :class:`StoreError`."""
    import pandas as pd

    store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    if not len(store):
        raise StoreError(f"{store.root}: the store holds no clips (every clip was removed when it was last built); "
                         "add audio with `python -m atrlib index build --audio DIR --index STORE`")
    if retriever is None:
        from atrlib.retrieval.search import resolve_retriever

        model = store.info["model"]
        retriever = resolve_retriever(model.get("source") or model["name"])
    if model_identity(retriever).get("name") != store.info["model"].get("name"):
        raise StoreError(f"{store.root}: the store was built with {store.info['model'].get('name')!r}, not "
                         f"{model_identity(retriever).get('name')!r}; search it with its own model (leave out --system)")
    q = _l2(retriever.embed_text(list(queries)))                                         # (m, d)
    notes: Dict[str, Optional[str]] = {}
    k = min(top, len(store))
    while True:  # deleted clips are skipped: ask for more until each query has ``top`` or the store is exhausted
        scores, ids = store.search(q, k=k)
        rows = []
        for qi, text in enumerate(queries):
            kept = 0
            for s_, i in zip(scores[qi], ids[qi]):
                if i < 0 or kept == top:
                    continue
                path = store.clips[i]
                note = notes[path] if path in notes else notes.setdefault(path, clip_note(store, path))
                if note == "deleted":
                    continue
                kept += 1
                rows.append({"query": text, "rank": kept, "file": Path(path).name, "score": float(s_), "path": path,
                             "note": note or ""})
        short = any(sum(r["query"] == t for r in rows) < min(top, len(store)) for t in queries)
        if not short or k >= len(store):
            break
        k = min(len(store), 2 * k)
    deleted = sorted(p for p, n in notes.items() if n == "deleted")
    if not rows:
        raise StoreError(f"{store.root}: every clip the store returned has been deleted since it was built "
                         f"({len(deleted)} checked); rebuild the store with `python -m atrlib index build`")
    table = pd.DataFrame(rows, columns=["query", "rank", "file", "score", "path", "note"])
    table.attrs["deleted"] = deleted
    return table
