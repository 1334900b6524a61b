"""atrlib — a workbench for language-based audio retrieval.

Importing atrlib first sets two thread settings that matter on small CPUs (measured on a
2-core machine): ``TOKENIZERS_PARALLELISM=false`` (small text batches otherwise run ~30x
slower) and ``OMP_WAIT_POLICY=PASSIVE`` (small CNNs otherwise run 2-80x slower). Both are
only defaults: a value already in the environment wins. OpenMP reads its variable when the
runtime starts, so import atrlib before torch.
"""
import os as _os

_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
