"""weights_hash names a tower's weights in cache keys: remembered per module, never stale."""
import torch

from atrlib.audio.embeddings import weights_hash


def test_the_hash_follows_every_change_of_the_weights():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    first = weights_hash(m)
    assert weights_hash(m) == first                       # asked again: the same (and remembered)
    twin = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    twin.load_state_dict(m.state_dict())
    assert weights_hash(twin) == first                    # same values, another module: the same hash
    with torch.no_grad():
        m[0].weight[0, 0] += 1e-3                         # an in-place change
    changed = weights_hash(m)
    assert changed != first
    m[0].weight = torch.nn.Parameter(m[0].weight.detach().clone())  # a replaced tensor, same values
    assert weights_hash(m) == changed
    m[1].bias = torch.nn.Parameter(torch.ones(2))          # a replaced tensor, new values
    assert weights_hash(m) not in (first, changed)
