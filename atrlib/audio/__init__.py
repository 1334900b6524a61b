"""Audio: decoding and resampling, mel maths, log-mel front ends, and the on-disk caches of
what frozen towers compute from clips.

    io.py          verified decoding (a clip that cannot be used is an error naming it), mono,
                   resampling, pad / crop / one segmenter
    mel.py         Hz <-> mel, librosa-equal and Kaldi-style filterbanks
    features.py    torch log-mel spectrograms from one FeatureConfig, named presets
    cache.py       the content-addressed cache of numpy arrays
    embeddings.py  a frozen tower's clip / caption embeddings, computed once and cached
    frames.py      a frozen tower's frame sequences, in memory or memory-mapped
"""
