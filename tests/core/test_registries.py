"""Registries fill themselves by discovery and fail loudly: importing the registry is enough,
a user's package adds items through an entry point, a module that fails to import is an error
naming it (never skipped)."""
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

from atrlib.errors import AtrlibError, RegistryError
from atrlib.registry import Registry

CROSS_MODAL = {"acml", "mlml", "atc", "atm", "atg", "tag_msle", "tag_mae", "claip", "distill", "listwise"}


def _fresh_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_importing_the_loss_registry_alone_registers_every_term():
    names = set(_fresh_python("""
        from atrlib.losses import LOSSES
        print(" ".join(LOSSES.names()))
    """).split())
    assert CROSS_MODAL <= names
    assert {"infonce", "ntxent_mei", "triplet_max", "triplet_sum", "triplet_weighted", "vicreg", "pair_loss"} <= names


def test_towers_and_datasets_are_found_by_walking_their_package():
    from atrlib.data import DATASETS
    from atrlib.models.towers import AUDIO_TOWERS, TEXT_TOWERS

    audio = set(AUDIO_TOWERS.names())
    for full in ("cnn14", "resnet38", "wavegram-logmel-cnn14", "beats", "passt"):  # registered from one table each
        assert full in audio and f"{full}-tiny" in audio, full
    assert {"efficientat-mn04", "hf-audio", "mel-stats", "small-cnn", "aisfx"} <= audio
    assert {"minilm", "hf", "mpnet"} <= set(TEXT_TOWERS.names())
    assert {"clotho", "folder", "synth", "audiocaps", "wavcaps", "macs", "fsd50k", "mixture"} <= set(DATASETS.names())


def _package(tmp_path, monkeypatch, files: dict) -> str:
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, src in files.items():
        (pkg / f"{name}.py").write_text(textwrap.dedent(src))
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in [m for m in sys.modules if m == "userpkg" or m.startswith("userpkg.")]:
        monkeypatch.delitem(sys.modules, mod)
    return "userpkg"


def test_a_module_that_fails_to_import_is_an_error_naming_it(tmp_path, monkeypatch):
    _package(tmp_path, monkeypatch, {"good": "VALUE = 1\n", "broken": "import no_such_module_anywhere\n"})
    reg = Registry("thing", package="userpkg")
    with pytest.raises(RegistryError, match=r"thing module 'userpkg.broken' failed to import.*no_such_module_anywhere"):
        reg.get("good")
    # not silently half-filled: the next look-up raises again
    with pytest.raises(RegistryError):
        reg.names()
    assert issubclass(RegistryError, AtrlibError)


def test_a_users_package_adds_a_tower_through_an_entry_point(tmp_path, monkeypatch):
    import atrlib.registry as R
    from atrlib.models.towers import AUDIO_TOWERS

    _package(tmp_path, monkeypatch, {"mytower": """
        from atrlib.models.towers import AUDIO_TOWERS
        AUDIO_TOWERS.register("my-tower", lambda **kw: "built")
    """})
    eps = [EntryPoint(name="my-tower", value="userpkg.mytower", group="atrlib.towers")]
    monkeypatch.setattr(R, "entry_points", lambda group: eps if group == "atrlib.towers" else [])
    monkeypatch.setattr(AUDIO_TOWERS, "_discovered", False)
    try:
        assert AUDIO_TOWERS.get("my-tower")() == "built"
        assert "cnn14" in AUDIO_TOWERS  # the built-in ones are still there
    finally:
        AUDIO_TOWERS._items.pop("my-tower", None)


def test_a_broken_entry_point_is_an_error_naming_it(monkeypatch):
    import atrlib.registry as R

    eps = [EntryPoint(name="bad", value="no_such_pkg.towers", group="atrlib.losses")]
    monkeypatch.setattr(R, "entry_points", lambda group: eps)
    reg = Registry("loss", entry_point="atrlib.losses")
    with pytest.raises(RegistryError, match=r"entry point 'bad' = 'no_such_pkg.towers'"):
        reg.names()
