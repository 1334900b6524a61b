"""One source for the stages: the notebooks folder, the tour, the profiles and the index page
agree with atrlib.runs.stages."""
from pathlib import Path

from atrlib.runs.profiles import load_profile
from atrlib.runs.stages import STAGES, stage_info, stage_names

ROOT = Path(__file__).resolve().parents[2]


def test_every_notebook_is_a_stage_and_every_stage_a_notebook():
    assert sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")) == stage_names()
    assert stage_names() == sorted(stage_names())  # numbered in running order


def test_the_tour_lists_every_stage():
    from atrlib.runs.tour import notebooks_table

    assert list(notebooks_table().index) == stage_names()


def test_profiles_run_stages_in_order_and_respect_their_needs():
    for name in ("demo", "smoke", "huawei2022"):
        prof = load_profile(name)
        names = [s.name for s in prof.stages]
        assert names == [n for n in stage_names() if n in names], name
        for s in prof.stages:
            assert set(stage_info(s.name).needs) & set(names) <= set(s.needs) | set(), (name, s.name)


def test_stage_info_names_the_stages_when_asked_for_an_unknown_one():
    import pytest

    with pytest.raises(KeyError, match="00_tour"):
        stage_info("07_nothing")
    assert all(s.title and s.try_parameters for s in STAGES)
