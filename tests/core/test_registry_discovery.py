"""Registry discovery by ``modules=``: named modules are imported on the first look-up, and one that
fails to import is an error naming it; the retriever registry finds the tag-bridge that way."""
import subprocess
import sys
import textwrap
import uuid

import pytest

from atrlib.errors import RegistryError
from atrlib.registry import Registry


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Write modules ``{name: source}`` under a fresh folder on ``sys.path``; returns their unique names."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made = []

    def write(**sources):
        tag = uuid.uuid4().hex[:8]
        names = {k: f"{k}_{tag}" for k in sources}
        for k, src in sources.items():
            (tmp_path / f"{names[k]}.py").write_text(textwrap.dedent(src.format(**names)))
            made.append(names[k])
        return names

    yield write
    for m in made:
        sys.modules.pop(m, None)


def test_a_lookup_imports_the_named_modules(modules):
    n = modules(holder="""
        from atrlib.registry import Registry
        WIDGETS = Registry("widget", modules=("{plugin}",))
        """, plugin="""
        from {holder} import WIDGETS

        @WIDGETS.register("gizmo")
        def gizmo():
            return "a gizmo"
        """)
    widgets = __import__(n["holder"]).WIDGETS
    assert widgets.modules == (n["plugin"],)
    assert n["plugin"] not in sys.modules                  # nothing imported before a look-up
    assert widgets.get("gizmo")() == "a gizmo"
    assert n["plugin"] in sys.modules
    assert widgets.names() == ["gizmo"] and "GIZMO" in widgets and list(widgets) == ["gizmo"]


@pytest.mark.parametrize("source", ['raise RuntimeError("boom")\n', None], ids=["raises", "missing"])
def test_a_module_that_fails_to_import_is_an_error_naming_it(modules, source):
    name = modules(broken=source)["broken"] if source else f"no_such_module_{uuid.uuid4().hex[:8]}"
    reg = Registry("widget", modules=(name,))
    reg.register("kept", object())
    with pytest.raises(RegistryError, match=name):
        reg.get("kept")
    with pytest.raises(RegistryError, match=name):    # not half-discovered: the next look-up raises again
        reg.names()


def test_without_modules_nothing_is_discovered():
    reg = Registry("widget")
    assert reg.modules == () and reg.names() == []


def test_the_retriever_registry_finds_the_tagbridge_by_discovery():
    code = textwrap.dedent("""
        import sys
        from atrlib.retrieval.retrievers import RETRIEVERS
        assert "atrlib.retrieval.tagbridge" not in sys.modules
        assert {"hf-clap", "msclap", "tagbridge", "trained"} <= set(RETRIEVERS.names()), RETRIEVERS.names()
        assert "atrlib.retrieval.tagbridge" in sys.modules
        from atrlib.retrieval.tagbridge import TagBridgeRetriever, tagbridge
        assert RETRIEVERS.get("tagbridge") is tagbridge
        assert "faiss" not in sys.modules and "atrlib.retrieval.index" not in sys.modules
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
