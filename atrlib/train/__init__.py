"""Training a dual encoder: a typed config, its checks, the loop read top to bottom.

    config.py       TrainConfig: every setting with its help string and its checks
    preflight.py    checks before work starts: values, the output folder, a resumed run
    loop.py         fit() and run_training(): config -> inputs -> epochs -> best/ and metrics
    checkpoints.py  last/ and best/, swapped in atomically
    mixup.py        cross-modal mix-up; augment.py: caption paraphrases from a file
"""
