"""A model config override or a weight file that cannot fit is an error naming the field or the
file (atrlib.errors), never a TypeError or a torch traceback."""
import pytest
import torch

from atrlib.errors import ConfigError, WeightsFileError
from atrlib.models.dual import get_model_config
from atrlib.models.towers import AUDIO_TOWERS


@pytest.mark.parametrize("override, says", [
    ({"nope": 1}, "the model config 'synth-stats-minilm' has no field 'nope'"),
    ({"audio": {"segmnts": 2}}, "the audio tower config has no field 'segmnts'"),
])
def test_an_unknown_override_names_the_field_and_the_valid_ones(override, says):
    with pytest.raises(ConfigError, match=says) as e:
        get_model_config("synth-stats-minilm", **override)
    assert "kwargs" in str(e.value)
    assert get_model_config("synth-stats-minilm", audio={"kwargs": {"segments": 2}}).audio.kwargs["segments"] == 2


def test_weights_of_another_shape_name_the_file_and_the_tower(tmp_path):
    sd = AUDIO_TOWERS.get("cnn14-tiny")(pretrained=None).state_dict()
    key = next(k for k, v in sd.items() if v.ndim == 4)
    sd[key] = torch.zeros(3, 3, 3, 3)
    bad = tmp_path / "other.pth"
    torch.save(sd, bad)
    with pytest.raises(WeightsFileError, match=r"other\.pth: these weights do not fit the cnn14-tiny tower \(size mismatch"):
        AUDIO_TOWERS.get("cnn14-tiny")(weights=str(bad))
