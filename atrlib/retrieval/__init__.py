"""Retrieval: from a similarity matrix to the field's numbers, and ranking clips for sentences.

Pure functions at the bottom (metrics, ensembles over similarity matrices), then the recipes
that make those matrices from a system and a dataset split, then search over collections.

    metrics.py       R@k, mAP@k, ranks, confidence intervals, paired tests (pure)
    simfile.py       the similarity-matrix file that stages exchange
    summaries.py     tables a notebook shows of one scored system (CIs, chance, worst queries)
    ensemble.py      weighted sums and weight search, fitted on validation (pure)
    protocol2025.py  the DCASE 2025 protocol (graded relevance, mAP@16) beside the 2022–24 one
    scoring.py       a system on a split -> similarity matrix -> metrics
    rerank.py        top-K re-ranking with a matching head
    retrievers.py    retrievers by name, the base class, trained runs as retrievers
    tagbridge.py     the zero-shot tag-bridge (AudioSet tagger + label texts)
    search.py        ranking a folder of clips for sentences; explain.py: why this match
    fewshot.py       few-shot adaptation of the tag-bridge
    index.py         faiss indexes (exact, IVF, IVF-PQ, HNSW); store.py: the embedding store
"""
