"""Automated audio captioning (DCASE task 6a) on a retrieval run's frozen audio encoder — the
Xiaomi 2023 captioning sub-system — and captions as a retrieval signal.

    config      CaptionerConfig: sizes, the two-stage schedule, decoding (one default per setting)
    vocab       a text tower's tokenizer and the word pieces the captions use
    features    E_A: a run's frozen audio tower (frames, pooled or through its head), cached
    model       E_AC (bidirectional GRU) + D_AC (Transformer decoder) + word classifier; save / load
    train       teacher-forced cross-entropy, pre-training then fine-tuning
    decode      greedy and beam search, ensembles of log-probabilities, the Q-Former's ATG head
    metrics     BLEU, ROUGE-L, CIDEr-D in Python (equal to pycocoevalcap / aac-metrics)
    external    the Java tools (PTB tokenizer, METEOR, SPICE) and FENSE: found here or missing, with why
    evaluate    every challenge metric, corpus and per clip, bootstrap CIs, paired tests
    files       predictions.csv / references.csv / metrics.json in the challenge's formats
    sources     a folder (captioner, 07 stage, Q-Former run) -> what decodes its clips; ensembles
    bridge      the caption-bridge retriever: rank clips by query-caption text similarity
    study       what notebook 07 shows: side by side, best / worst, word confusions, baselines
"""
