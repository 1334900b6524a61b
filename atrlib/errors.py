"""The one family of atrlib's errors: a user's mistake, worded so the user can fix it.

Every error here derives from :class:`AtrlibError` and has a message that names the file, the
row or the parameter and says what to do. The command line prints that message, without a
traceback, and exits 2 (``--debug`` shows the traceback); anything else that escapes is a bug and
keeps its traceback. Each class also derives from the built-in error it used to be
(``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps working.

    AtrlibError
    ├── DatasetError            bad dataset input: a CSV, a caption file, a split       (ValueError)
    ├── AudioError              an audio file that cannot be used                       (RuntimeError)
    ├── WeightsError            a weight file
    │   ├── WeightsNotFoundError   no copy found or downloadable                        (FileNotFoundError)
    │   └── ChecksumError          a download's checksum or size differs                (ValueError)
    ├── ConfigError             a parameter, a config or a set-up                       (ValueError)
    │   ├── UnknownNameError       a name no registry holds (model, loss, tower, dataset)  (KeyError)
    │   ├── PreflightError         caught before a training run starts
    │   ├── ProfileError           a profile, an override or a stage selection
    │   └── SweepError             a sweep spec or its trials
    ├── InputFileError          another file a user hands in                            (ValueError)
    │   ├── ParaphraseFileError    a paraphrase file
    │   ├── RelevanceFileError     a DCASE 2025 relevance file
    │   ├── MomentsFileError       a moment-retrieval JSONL file (ground truth or predictions)
    │   ├── StoreError             an embedding store folder (corrupt, empty, paths outside it)
    │   ├── TeacherFileError       a distillation teacher's similarity file
    │   └── WeightsFileError       a weight file that cannot be read (corrupt, truncated, not weights)
    ├── RunError                a run folder
    │   └── RunExistsError         the folder exists and holds something               (FileExistsError)
    ├── OutputExistsError       an output path --overwrite may not replace: an input,   (FileExistsError)
    │                           a user's own file or folder, another command's result
    ├── DiskWriteError          a write failed: disk full, read-only, permissions       (OSError)
    └── RegistryError           a registered module or entry point failed to import    (ImportError)
"""
from __future__ import annotations


class AtrlibError(Exception):
    """Base of atrlib's user-facing errors: the message names what is wrong and the fix."""


class DatasetError(AtrlibError, ValueError):
    """Bad dataset input; the message names the file, the row and what to do."""


class AudioError(AtrlibError, RuntimeError):
    """An audio file that cannot be used; the message names the file and the fix."""


class WeightsError(AtrlibError):
    """A pretrained weight file that cannot be found, fetched or loaded."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No copy of a weight file could be found or downloaded; the message says what to do."""


class ChecksumError(WeightsError, ValueError):
    """A downloaded file's checksum (or size) differs from the one on record; it was deleted."""


class ConfigError(AtrlibError, ValueError):
    """A parameter value, a config or a set-up that cannot work."""


class UnknownNameError(ConfigError, KeyError):
    """A name that no registry holds; the message lists the registered names."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class PreflightError(ConfigError):
    """A parameter, folder or data set-up that would waste or corrupt a run; raised before work."""


class ProfileError(ConfigError):
    """A profile, an override or a stage selection is invalid (raised before anything runs)."""


class SweepError(ConfigError):
    """The sweep spec or its trials are invalid (raised before anything runs)."""


class InputFileError(AtrlibError, ValueError):
    """A file a user hands in (other than a dataset) that cannot be read; names file, row, fix."""


class ParaphraseFileError(InputFileError):
    """A paraphrase file that cannot be read; names the file, the row and the fix."""


class RelevanceFileError(InputFileError):
    """A relevance file that cannot be read as the DCASE 2025 format; names file, row and fix."""


class MomentsFileError(InputFileError):
    """A moment-retrieval JSONL file (ground truth or predictions) that cannot be read;
    names the file, the line and the fix."""


class StoreError(InputFileError):
    """An embedding store that cannot be used: a corrupt or missing file, a path outside the
    store folder, no clips; names the store and the fix."""


class TeacherFileError(InputFileError):
    """A distillation teacher's similarity file that cannot be used (malformed, NaN, wrong shape)."""


class WeightsFileError(WeightsError, InputFileError):
    """A weight or model file that cannot be read (corrupt, truncated, empty, not a state dict)."""


class RunError(AtrlibError):
    """A run folder that cannot be used as asked."""


class RunExistsError(RunError, FileExistsError):
    """The run folder exists and is not empty, and ``overwrite`` was not given."""


class OutputExistsError(AtrlibError, FileExistsError):
    """An output path that exists and may not be replaced: ``--overwrite`` moves aside only an
    earlier result of the same command (recognised by its own files), never an input of the
    command, a user's own file or folder, or a run of another kind."""


class DiskWriteError(AtrlibError, OSError):
    """A write failed for a reason a user can act on (disk full, read-only, permissions)."""


class RegistryError(AtrlibError, ImportError):
    """A module or entry point that fills a registry failed to import (it is never skipped)."""
