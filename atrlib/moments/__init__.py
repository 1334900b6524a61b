"""Audio moment retrieval (DCASE 2026 Task 6): find *when* in a long recording a sentence happens.

A query is a sentence and one long recording; the answer is a ranked list of time windows
``[start, end, score]``, scored against the annotated windows by R1@IoU and mAP (the
Moment-DETR / Lighthouse evaluator).

    formats.py    the JSONL files: ground truth (queries, windows) and predictions; every error names file and line
    metrics.py    IoU, R1@0.5/0.7, mAP over IoU 0.5:0.05:0.95, per query, with CIs and paired tests (pure)
    baselines.py  chance predictions: the whole recording, random windows
    generate.py   Clotho-Moment-style long recordings from any clip collection (background bed + events)
    datasets.py   loaders of the Clotho-Moment and CASTELLA layouts (annotations + audio named by vid)
    stream.py     long recordings read in windows: soundfile blocks, streaming resampler, a window + hop held
    spans.py      a score curve -> ranked windows: frames, smoothing, relative thresholds, temporal NMS (pure)
    encoders.py   one vector per window (tag-bridge, a trained dual encoder, mel-stats), streamed and cached
    retrieve.py   curve retrievers: window cosines with the query -> spans (zero-shot or trained)
    head.py       the moment head: dense anchors, FiLM + attention + dilated convs, the span loss
    head_train.py training it (seeded, chosen on validation, resumable) and using it on any recording
    predict.py    a queries file answered: the system by name or folder, audio by vid, errors naming the line
    study.py      what notebook 08 calls: generated splits, tables with CIs and paired tests, failures, a figure
    heldout.py    the held-out study on a folder of real clips: disjoint clip groups, every choice on validation
"""
