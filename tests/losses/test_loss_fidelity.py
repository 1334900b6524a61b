"""Every loss equals its reference implementation on the same inputs.

References: open_clip's ``ClipLoss`` (its ``loss.py``, loaded on its own from the installed
``open_clip_torch`` wheel: the package itself needs torchvision), pytorch-metric-learning's
``ContrastiveLoss`` and ``SupConLoss`` (both test-only: ``pip install --no-deps
open_clip_torch pytorch-metric-learning``; the tests skip with the reason when they are
absent), and independent re-statements, written here from the papers' code, of Mei et al.'s
``tools/loss.py`` (NTXent, TripletLoss, BiDirectionalRankingLoss, WeightTriplet), SupContrast's
``SupConLoss`` and facebookresearch/vicreg's loss. Nothing of those repositories is copied.
"""
import importlib.util

import atrlib  # noqa: F401  (thread settings before torch)
import pytest
import torch
import torch.nn.functional as F

from atrlib.losses import get_loss

CLIPS = [3, 7, 3, 1, 7, 3, 9, 4]  # clip 3 three times, clip 7 twice: other captions of a clip in the batch


def batch(seed=0, clips=CLIPS, dim=6):
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(len(clips), dim, generator=g, dtype=torch.float64), dim=1)
    t = F.normalize(torch.randn(len(clips), dim, generator=g, dtype=torch.float64), dim=1)
    return a.requires_grad_(), t.requires_grad_(), torch.tensor(clips)


def total(terms):
    return sum(terms.values())


def same_value_and_grads(ours, ref, seed=0, clips=CLIPS, dim=6):
    """Value and gradients (with respect to the embeddings before L2 normalisation, as in a
    model: references that normalise again, like ``util.cos_sim``, then agree) of both."""
    a, t, ids = batch(seed, clips, dim)
    got = ours(F.normalize(a, dim=1), F.normalize(t, dim=1), ids)
    ga, gt = torch.autograd.grad(got, (a, t))
    a2, t2, _ = batch(seed, clips, dim)
    want = ref(F.normalize(a2, dim=1), F.normalize(t2, dim=1), ids)
    ra, rt = torch.autograd.grad(want, (a2, t2))
    assert got.item() == pytest.approx(want.item(), rel=1e-9, abs=1e-12)
    torch.testing.assert_close(ga, ra, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(gt, rt, rtol=1e-7, atol=1e-10)
    return got.item()


# ------------------------------------------------------------------------- reference packages


@pytest.fixture(scope="module")
def clip_loss():
    """open_clip's ``ClipLoss`` from the installed wheel's ``open_clip/loss.py`` (imported alone)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("reference open_clip absent: `pip install --no-deps open_clip_torch` (test-only)")
    path = spec.submodule_search_locations[0] + "/loss.py"
    mod_spec = importlib.util.spec_from_file_location("_open_clip_loss_reference", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod.ClipLoss()


@pytest.fixture(scope="module")
def pml():
    return pytest.importorskip("pytorch_metric_learning",
                               reason="reference pytorch-metric-learning absent: `pip install --no-deps "
                                      "pytorch-metric-learning` (test-only)")


# ------------------------------------------------------------------------- InfoNCE / NT-Xent


@pytest.mark.parametrize("seed", [0, 1])
def test_infonce_default_is_open_clip_clip_loss(clip_loss, seed):
    scale = torch.tensor(7.5, dtype=torch.float64)
    same_value_and_grads(lambda a, t, c: get_loss("infonce")(a, t, c, scale)["infonce"],
                         lambda a, t, c: clip_loss(a, t, scale), seed)


def test_infonce_mask_option_differs_from_clip_when_a_clip_repeats(clip_loss):
    a, t, ids = batch(0)
    scale = torch.tensor(7.5, dtype=torch.float64)
    masked = get_loss("infonce", positives="mask")(a, t, ids, scale)["infonce"].item()
    assert masked < clip_loss(a, t, scale).item() - 1e-3  # fewer negatives in the denominators
    distinct = torch.arange(len(ids))
    assert get_loss("infonce", positives="mask")(a, t, distinct, scale)["infonce"].item() == pytest.approx(
        clip_loss(a, t, scale).item(), rel=1e-12)


def mei_ntxent(a, t, labels, tau=0.07):
    """Mei et al.'s NTXent re-stated: row-wise log-softmax of cos/tau in both directions, then
    a same-clip mask (diagonal excluded) filled with 0 *after* the log-softmax, then the mean
    of minus the diagonal, averaged over the two directions."""
    n = len(labels)
    cos = F.normalize(a, dim=1) @ F.normalize(t, dim=1).T
    same = labels[:, None] == labels[None, :]
    off = same & ~torch.eye(n, dtype=torch.bool)
    out = 0.0
    for logits in (cos / tau, cos.T / tau):
        out = out + 0.5 * -(logits.log_softmax(1).masked_fill(off, 0.0).diagonal().mean())
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_ntxent_mei_is_mei_et_al_and_clip_at_fixed_temperature(clip_loss, seed):
    v = same_value_and_grads(lambda a, t, c: get_loss("ntxent_mei")(a, t, c)["ntxent_mei"],
                             lambda a, t, c: mei_ntxent(a, t, c, 0.07), seed)
    a, t, _ = batch(seed)
    assert v == pytest.approx(clip_loss(a, t, torch.tensor(1 / 0.07, dtype=torch.float64)).item(), rel=1e-9)
    # the SimCLR 2B-view loss is another loss: in-modality negatives, another value
    simclr = get_loss("ntxent_simclr", temperature=0.07)(a, t, batch(seed)[2], None)["ntxent_simclr"].item()
    assert abs(simclr - v) > 0.1


def test_old_ntxent_name_is_the_simclr_loss():
    a, t, ids = batch(2)
    scale = torch.tensor(5.0, dtype=torch.float64)
    old = get_loss("ntxent")(a, t, ids, scale)
    new = get_loss("ntxent_simclr")(a, t, ids, scale)
    assert list(old) == ["ntxent"] and list(new) == ["ntxent_simclr"]
    assert old["ntxent"].item() == new["ntxent_simclr"].item()


# ------------------------------------------------------------------------- triplets (Mei et al.)


def mei_costs(a, t, labels, margin):
    """cost_s[i, j] = hinge of audio anchor i vs caption j, cost_a[i, j] = caption anchor j vs
    audio i; same-clip entries zeroed (their ``mask``)."""
    sim = a @ t.T
    diag = sim.diagonal()
    same = labels[:, None] == labels[None, :]
    cost_s = (margin + sim - diag[:, None]).clamp(min=0).masked_fill(same, 0)
    cost_a = (margin + sim - diag[None, :]).clamp(min=0).masked_fill(same, 0)
    return cost_s, cost_a


def mei_ranking(a, t, labels, margin=0.2):  # BiDirectionalRankingLoss
    cs, ca = mei_costs(a, t, labels, margin)
    return (cs.sum() + ca.sum()) / len(labels)


def mei_triplet(a, t, labels, margin=0.2):  # TripletLoss: hardest negative per anchor
    cs, ca = mei_costs(a, t, labels, margin)
    return (cs.max(1)[0].sum() + ca.max(0)[0].sum()) / len(labels)


def mei_weight_triplet(a, t, labels, margin=0.2, eps=1e-5):
    """WeightTriplet re-stated anchor by anchor, both directions, with their rule that drops a
    positive >= 1 - eps and then takes min() of what is left (an error when nothing is)."""
    sim = a @ t.T
    terms = []
    for m in (sim, sim.T):
        for i in range(len(labels)):
            pos = [m[i, i]] if m[i, i] < 1 - eps else []
            negs = [m[i, j] for j in range(len(labels)) if labels[j] != labels[i]]
            floor = min(pos)  # raises ValueError on an empty list, as their code does
            informative = [n for n in negs if n + margin > floor]
            if not informative:
                continue
            p, n = pos[0], max(informative)
            terms.append((0.2 * p * p - 0.7 * p + 0.5).clamp(min=0) + (0.9 * n * n - 0.4 * n + 0.03).clamp(min=0))
    return sum(terms) / len(labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name,ref", [("triplet_sum", mei_ranking), ("triplet_max", mei_triplet),
                                      ("triplet_weighted", mei_weight_triplet)])
def test_triplets_are_mei_et_al(name, ref, seed):
    same_value_and_grads(lambda a, t, c: get_loss(name)(a, t, c, None)[name], ref, seed)


def test_weighted_triplet_where_mei_raises():
    a, t, ids = batch(0)
    t = t.detach().clone()
    t[1] = a[1].detach()  # positive cosine 1 for pair 1
    with pytest.raises(ValueError):
        mei_weight_triplet(a.detach(), t, ids)
    out = get_loss("triplet_weighted")(a, t, ids, None)["triplet_weighted"]
    assert torch.isfinite(out)


# ------------------------------------------------------------------------- SupCon, VICReg


def supcontrast(a, t, labels, temperature, base_temperature):
    """SupContrast's SupConLoss re-stated for features (bsz, n_views=2, dim), contrast_mode
    'all': anchors and contrasts are all 2B views; self excluded; mean log-prob over
    positives, scaled by -(temperature / base_temperature), mean over anchors."""
    feats = torch.cat([a, t])  # views stacked view-major, as torch.cat(torch.unbind(features, 1))
    lab = torch.cat([labels, labels])
    logits = feats @ feats.T / temperature
    logits = logits - logits.max(1, keepdim=True)[0].detach()
    not_self = ~torch.eye(len(lab), dtype=torch.bool)
    pos = (lab[:, None] == lab[None, :]) & not_self
    log_prob = logits - torch.log((logits.exp() * not_self).sum(1, keepdim=True))
    mean_log_prob_pos = (pos * log_prob).sum(1) / pos.sum(1)
    return (-(temperature / base_temperature) * mean_log_prob_pos).mean()


@pytest.mark.parametrize("seed", [0, 1])
def test_supcon_is_supcontrast_and_pml(pml, seed):
    from pytorch_metric_learning.losses import SupConLoss

    tau = 0.1
    ours = lambda a, t, c: get_loss("supcon", temperature=tau)(a, t, c, None)["supcon"]  # noqa: E731
    same_value_and_grads(ours, lambda a, t, c: supcontrast(a, t, c, tau, tau), seed)
    same_value_and_grads(ours, lambda a, t, c: SupConLoss(temperature=tau)(torch.cat([a, t]), torch.cat([c, c])), seed)


def vicreg_reference(x, y, _clip_ids=None, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
    """facebookresearch/vicreg's loss re-stated (one process): MSE; per-branch centring, std
    hinge at 1 with eps 1e-4, halves of the two branches; off-diagonal covariance squared,
    summed, divided by the number of features, per branch."""
    n, d = x.shape
    repr_loss = ((x - y) ** 2).mean()
    x, y = x - x.mean(0), y - y.mean(0)
    std_loss = sum(F.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean() / 2 for z in (x, y))
    off = ~torch.eye(d, dtype=torch.bool)
    cov_loss = sum(((z.T @ z) / (n - 1))[off].pow(2).sum() / d for z in (x, y))
    return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


@pytest.mark.parametrize("seed", [0, 1])
def test_vicreg_is_facebookresearch_vicreg(seed):
    same_value_and_grads(lambda a, t, c: total(get_loss("vicreg")(a, t, c, None)), vicreg_reference, seed)


# ------------------------------------------------------------------------- pair loss (Huawei/UPF)


def pml_contrastive(a, t, ids):
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.losses import ContrastiveLoss

    loss = ContrastiveLoss(pos_margin=1, neg_margin=0, distance=CosineSimilarity())
    return loss(torch.cat([a, t]), torch.cat([ids, ids]))  # audio and text of a pair share a label


@pytest.mark.parametrize("seed,clips,dim", [(0, CLIPS, 6), (1, CLIPS, 6), (2, list(range(16)), 32)])
def test_pair_loss_default_is_pytorch_metric_learning_contrastive_loss(pml, seed, clips, dim):
    ours = lambda a, t, c: total(get_loss("pair_loss")(a, t, c, None))  # noqa: E731
    same_value_and_grads(ours, pml_contrastive, seed, clips, dim)
    a, t, ids = batch(seed, clips, dim)
    joint = total(get_loss("pair_loss", reduction="joint")(a, t, ids, None)).item()
    assert joint < pml_contrastive(a, t, ids).item() - 0.1  # the joint mean is another (smaller) loss
