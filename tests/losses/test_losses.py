"""Each loss against a slow loop-over-pairs reference, plus hand-computed cases."""
import math

import atrlib  # noqa: F401  (thread settings before torch)
import pytest
import torch
import torch.nn.functional as F

from atrlib.losses import LOSSES, get_loss

ALL = [
    "infonce", "ntxent", "supcon", "triplet_sum", "triplet_max", "triplet_weighted",
    "vicreg", "infonce+vicreg", "pair_loss", "ntxent_mei", "ntxent_simclr",
]
CLIPS = [3, 7, 3, 1, 7, 3, 9]  # batch of 7 pairs: clip 3 three times, clip 7 twice


def batch(seed=0, clips=CLIPS, dim=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(len(clips), dim, generator=g, dtype=dtype), dim=1)
    t = F.normalize(torch.randn(len(clips), dim, generator=g, dtype=dtype), dim=1)
    return a.requires_grad_(), t.requires_grad_(), torch.tensor(clips, dtype=torch.int64)


def total(terms):
    return sum(terms.values())


# ----------------------------------------------------------------- slow references (loops)
# Every reference builds its value from 0-d tensors so autograd gives reference gradients.


def dot(x, y):
    return sum(x[k] * y[k] for k in range(len(x)))


def views(a, t, ids):
    """The 2B views as (embedding, clip, index of the pair partner)."""
    b = len(ids)
    return [(a[i], int(ids[i]), i + b) for i in range(b)] + [(t[i], int(ids[i]), i) for i in range(b)]


def ref_infonce(a, t, ids, scale, positives="mask"):
    b, ids = len(ids), [int(c) for c in ids]
    out = 0.0
    for q, d in ((a, t), (t, a)):  # audio->text, then text->audio
        for i in range(b):
            logits = [scale * dot(q[i], d[j]) for j in range(b)]
            if positives == "mask":
                den = sum(torch.exp(logits[j]) for j in range(b) if j == i or ids[j] != ids[i])
                out = out - (logits[i] - torch.log(den)) / b
            else:
                den = sum(torch.exp(x) for x in logits)
                pos = [j for j in range(b) if ids[j] == ids[i]]
                out = out - sum(logits[j] - torch.log(den) for j in pos) / len(pos) / b
    return {"infonce": out / 2}


def ref_ntxent(a, t, ids, scale):
    v = views(a, t, ids)
    out = 0.0
    for k, (zk, ck, p) in enumerate(v):
        den = sum(torch.exp(scale * dot(zk, zm)) for m, (zm, cm, _) in enumerate(v)
                  if m != k and (cm != ck or m == p))
        out = out - (scale * dot(zk, v[p][0]) - torch.log(den))
    return {"ntxent": out / len(v)}


def ref_supcon(a, t, ids, scale):
    v = views(a, t, ids)
    out = 0.0
    for k, (zk, ck, _) in enumerate(v):
        den = sum(torch.exp(scale * dot(zk, zm)) for m, (zm, _, _) in enumerate(v) if m != k)
        pos = [m for m, (_, cm, _) in enumerate(v) if m != k and cm == ck]
        out = out - sum(scale * dot(zk, v[m][0]) - torch.log(den) for m in pos) / len(pos)
    return {"supcon": out / len(v)}


def anchors(a, t, ids):
    """Per anchor (audio rows then captions): (positive sim, [negative sims])."""
    b, ids = len(ids), [int(c) for c in ids]
    out = []
    for i in range(b):  # audio anchor i against captions
        out.append((dot(a[i], t[i]), [dot(a[i], t[j]) for j in range(b) if ids[j] != ids[i]]))
    for j in range(b):  # caption anchor j against audio
        out.append((dot(a[j], t[j]), [dot(a[i], t[j]) for i in range(b) if ids[i] != ids[j]]))
    return out


def hinge(x):
    return x if x > 0 else 0.0 * x


def ref_triplet_sum(a, t, ids, margin=0.2):
    s = sum(hinge(margin + n - p) for p, negs in anchors(a, t, ids) for n in negs)
    return {"triplet_sum": s / len(ids)}


def ref_triplet_max(a, t, ids, margin=0.2):
    s = 0.0
    for p, negs in anchors(a, t, ids):
        costs = [hinge(margin + n - p) for n in negs]
        s = s + (max(costs) if costs else 0.0)
    return {"triplet_max": s / len(ids)}


def ref_triplet_weighted(a, t, ids, margin=0.2, pc=(0.2, -0.7, 0.5), nc=(0.9, -0.4, 0.03)):
    s, active = 0.0, 0
    for p, negs in anchors(a, t, ids):
        informative = [n for n in negs if n + margin > p]
        if not informative:
            continue
        active += 1
        n = max(informative)
        s = s + hinge(pc[0] * p * p + pc[1] * p + pc[2]) + hinge(nc[0] * n * n + nc[1] * n + nc[2])
    return {"triplet_weighted": s / len(ids)}, active


def ref_var_cov(z, gamma, eps):
    n, d = z.shape
    mean = [sum(z[i, k] for i in range(n)) / n for k in range(d)]
    c = [[sum((z[i, k] - mean[k]) * (z[i, l] - mean[l]) for i in range(n)) / (n - 1)
          for l in range(d)] for k in range(d)]
    var = sum(hinge(gamma - torch.sqrt(c[k][k] + eps)) for k in range(d)) / d
    cov = sum(c[k][l] ** 2 for k in range(d) for l in range(d) if k != l) / d
    return var, cov


def ref_vicreg(a, t, ids, w=(25.0, 25.0, 1.0), gamma=1.0, eps=1e-4):
    n, d = a.shape
    inv = sum((a[i, k] - t[i, k]) ** 2 for i in range(n) for k in range(d)) / (n * d)
    va, ca = ref_var_cov(a, gamma, eps)
    vt, ct = ref_var_cov(t, gamma, eps)
    return {"vicreg_inv": w[0] * inv, "vicreg_var": w[1] * (va + vt) / 2, "vicreg_cov": w[2] * (ca + ct)}


def ref_pair(a, t, ids, reduction="joint"):
    v = views(a, t, ids)
    pos, neg = [], []
    for k, (zk, ck, _) in enumerate(v):
        for m, (zm, cm, _) in enumerate(v):
            if m == k:
                continue
            s = dot(zk, zm)
            (pos if cm == ck else neg).append(hinge(1 - s) if cm == ck else hinge(s))
    pos = [x for x in pos if x > 0]
    neg = [x for x in neg if x > 0]
    if reduction == "joint":
        n = len(pos) + len(neg)
        return {"pair_pos": sum(pos) / n, "pair_neg": sum(neg) / n}
    return {"pair_pos": sum(pos) / len(pos), "pair_neg": sum(neg) / len(neg)}


SCALE = 4.0
CASES = [  # (name, kwargs, reference)
    ("infonce", {"positives": "mask"}, lambda a, t, c: ref_infonce(a, t, c, SCALE)),
    ("infonce", {"positives": "spread"}, lambda a, t, c: ref_infonce(a, t, c, SCALE, "spread")),
    ("ntxent", {}, lambda a, t, c: ref_ntxent(a, t, c, SCALE)),
    ("ntxent", {"temperature": 0.1}, lambda a, t, c: ref_ntxent(a, t, c, 10.0)),
    ("supcon", {}, lambda a, t, c: ref_supcon(a, t, c, SCALE)),
    ("triplet_sum", {}, lambda a, t, c: ref_triplet_sum(a, t, c)),
    ("triplet_sum", {"margin": 0.5}, lambda a, t, c: ref_triplet_sum(a, t, c, 0.5)),
    ("triplet_max", {}, lambda a, t, c: ref_triplet_max(a, t, c)),
    ("triplet_weighted", {}, lambda a, t, c: ref_triplet_weighted(a, t, c)[0]),
    ("triplet_weighted", {"margin": 0.5, "pos_coef": (0.3, -0.8, 0.6)},
     lambda a, t, c: ref_triplet_weighted(a, t, c, 0.5, (0.3, -0.8, 0.6))[0]),
    ("vicreg", {}, lambda a, t, c: ref_vicreg(a, t, c)),
    ("vicreg", {"gamma": 0.4, "cov_weight": 2.0},
     lambda a, t, c: ref_vicreg(a, t, c, (25.0, 25.0, 2.0), gamma=0.4)),
    ("infonce+vicreg", {"vicreg_weight": 0.3, "positives": "mask"},
     lambda a, t, c: {**ref_infonce(a, t, c, SCALE),
                      **{k: 0.3 * x for k, x in ref_vicreg(a, t, c).items()}}),
    ("pair_loss", {"reduction": "joint"}, lambda a, t, c: ref_pair(a, t, c)),
    ("pair_loss", {"reduction": "separate"}, lambda a, t, c: ref_pair(a, t, c, "separate")),
]


@pytest.mark.parametrize("name,kwargs,ref", CASES, ids=[f"{n}-{k}" for n, k, _ in CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_reference_values_and_gradients(name, kwargs, ref, seed):
    a, t, ids = batch(seed)
    got = get_loss(name, **kwargs)(a, t, ids, torch.tensor(SCALE, dtype=torch.float64))
    ga, gt = torch.autograd.grad(total(got), (a, t))

    a2, t2, _ = batch(seed)
    want = ref(a2, t2, ids)
    ra, rt = torch.autograd.grad(total(want), (a2, t2))

    assert set(got) == set(want)
    for k in want:
        assert got[k].item() == pytest.approx(want[k].item(), rel=1e-9, abs=1e-12), k
    assert torch.isfinite(ga).all() and torch.isfinite(gt).all()
    assert ga.abs().sum() > 0
    torch.testing.assert_close(ga, ra, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gt, rt, rtol=1e-8, atol=1e-10)


def test_weighted_triplet_inputs_exercise_both_branches():
    # the reference comparison above is only meaningful if some anchors are active and some not
    for seed in (0, 1):
        a, t, ids = batch(seed)
        _, active = ref_triplet_weighted(a, t, ids)
        assert 0 < active < 2 * len(ids)


# ----------------------------------------------------------------- hand-computed cases


def aligned(b=4):
    """Orthonormal audio, text identical to its audio, all clips distinct."""
    e = torch.eye(b, dtype=torch.float64)
    return e.clone().requires_grad_(), e.clone().requires_grad_(), torch.arange(b)


@pytest.mark.parametrize("name", ["infonce", "ntxent", "supcon", "infonce+vicreg"])
def test_aligned_embeddings_with_big_scale_give_near_zero_contrastive_loss(name):
    a, t, ids = aligned()
    terms = get_loss(name)(a, t, ids, torch.tensor(100.0, dtype=torch.float64))
    for k in ("infonce", "ntxent", "supcon"):
        if k in terms:
            assert terms[k].item() < 1e-30
    if name == "infonce+vicreg":
        assert terms["vicreg_inv"].item() == 0.0  # a == t


def test_infonce_two_pairs_by_hand():
    a, t, ids = aligned(2)  # logits [[s, 0], [0, s]]
    for s in (1.0, 3.0):
        got = get_loss("infonce")(a, t, ids, torch.tensor(s))["infonce"].item()
        assert got == pytest.approx(math.log(1 + math.exp(-s)))


def test_logit_scale_receives_gradient():
    a, t, ids = batch()
    scale = torch.tensor(SCALE, dtype=torch.float64, requires_grad=True)
    for name in ("infonce", "ntxent", "supcon"):
        (g,) = torch.autograd.grad(total(get_loss(name)(a, t, ids, scale)), scale)
        assert torch.isfinite(g) and g != 0
    # a fixed temperature ignores it
    out = get_loss("ntxent", temperature=0.1)(a, t, ids, scale)["ntxent"]
    assert out.item() == pytest.approx(get_loss("ntxent")(a, t, ids, torch.tensor(10.0))["ntxent"].item())


@pytest.mark.parametrize("name", ["triplet_sum", "triplet_max", "triplet_weighted"])
def test_triplet_is_zero_when_margin_satisfied(name):
    a, t, ids = aligned(4)  # positives 1, negatives 0: margin 0.2 is satisfied
    out = get_loss(name)(a, t, ids, None)[name]
    assert out.item() == 0.0
    (g,) = torch.autograd.grad(out, a, allow_unused=True)
    assert g is None or (g == 0).all()


def test_triplet_violated_margin_by_hand():
    b, m = 4, 1.5  # every hinge = m + 0 - 1 = 0.5; 2 directions x b anchors x (b-1) negatives
    a, t, ids = aligned(b)
    assert get_loss("triplet_sum", margin=m)(a, t, ids, None)["triplet_sum"].item() == pytest.approx(
        2 * b * (b - 1) * 0.5 / b)
    assert get_loss("triplet_max", margin=m)(a, t, ids, None)["triplet_max"].item() == pytest.approx(
        2 * b * 0.5 / b)
    # weighted: every anchor is active; P(1) = 0.2 - 0.7 + 0.5 = 0, N(0) = 0.03
    got = get_loss("triplet_weighted", margin=m)(a, t, ids, None)["triplet_weighted"].item()
    assert got == pytest.approx(2 * b * 0.03 / b)


def test_pair_loss_by_hand():
    a, t, ids = aligned(3)
    terms = get_loss("pair_loss")(a, t, ids, None)  # matching s=1, non-matching s=0: all terms 0
    assert total(terms).item() == 0.0
    total(terms).backward()
    assert torch.isfinite(a.grad).all()
    # rotate text 0 by 60 degrees towards dim 1: a0.t0 = a1.t0 = t0.t1 = 0.5, a0.t0 term = 0.5,
    # t0 also against a1 (0.5) and t1 (0.5), both non-matching, each counted twice (ordered pairs)
    t2 = torch.eye(3, dtype=torch.float64)
    t2[0] = torch.tensor([0.5, math.sqrt(3) / 2, 0.0], dtype=torch.float64)
    terms = get_loss("pair_loss", reduction="joint")(a.detach(), t2, ids, None)
    # non-zero ordered terms: (a0,t0),(t0,a0) 0.5 each; (a1,t0),(t0,a1) 0.866 each; (t0,t1),(t1,t0) 0.866
    r = math.sqrt(3) / 2
    assert terms["pair_pos"].item() == pytest.approx(1.0 / 6)
    assert terms["pair_neg"].item() == pytest.approx(4 * r / 6)
    sep = get_loss("pair_loss", reduction="separate")(a.detach(), t2, ids, None)
    assert sep["pair_pos"].item() == pytest.approx(0.5)
    assert sep["pair_neg"].item() == pytest.approx(r)


def test_vicreg_by_hand():
    # two pairs in 2-D: a = [[1,0],[0,1]], t = [[0,1],[1,0]] (swapped)
    a = torch.eye(2, dtype=torch.float64)
    t = a.flip(0)
    terms = get_loss("vicreg", gamma=1.0, eps=0.0)(a, t, torch.arange(2))
    assert terms["vicreg_inv"].item() == pytest.approx(25 * 1.0)  # every coordinate differs by 1
    # each dim has values {0, 1}: unbiased var 0.5, std 0.7071; hinge 1 - 0.7071
    assert terms["vicreg_var"].item() == pytest.approx(25 * (1 - math.sqrt(0.5)))
    # cov(x0, x1) = -0.5 per modality: (2 * 0.25) / 2 dims = 0.25, two modalities
    assert terms["vicreg_cov"].item() == pytest.approx(0.5)


# ----------------------------------------------------------------- duplicates are never negatives


def with_private_dim(a, t, i, j, c=1.5):
    """Raise a_i . t_j by c*c (1.5: above every other similarity) and no other cross similarity."""
    a, t = a.detach(), t.detach()
    pad = torch.zeros(len(a), 1, dtype=a.dtype)
    a2, t2 = torch.cat([a, pad], 1), torch.cat([t, pad], 1)
    a2[i, -1] = c
    t2[j, -1] = c
    return a2, t2


def value(name, a, t, ids, **kw):
    return total(get_loss(name, **kw)(a, t, ids, torch.tensor(SCALE, dtype=torch.float64))).item()


@pytest.mark.parametrize("name,kwargs", [
    ("infonce", {"positives": "mask"}), ("ntxent", {}), ("triplet_sum", {"margin": 2.0}),
    ("triplet_max", {"margin": 2.0}), ("triplet_weighted", {"margin": 2.0}),
])
def test_same_clip_pairs_are_not_negatives(name, kwargs):
    a, t, ids = batch(3)
    assert ids[0] == ids[2] and ids[0] != ids[1]
    a0, t0 = with_private_dim(a, t, 0, 0, c=0.0)
    base = value(name, a0, t0, ids, **kwargs)
    # a0 with caption 2 (same clip 3): not a negative, so nothing moves
    a_same, t_same = with_private_dim(a, t, 0, 2)
    assert value(name, a_same, t_same, ids, **kwargs) == pytest.approx(base, rel=1e-12, abs=1e-12)
    # control: a0 with caption 1 (another clip) is a negative; with margin 2 every hinge is active
    a_neg, t_neg = with_private_dim(a, t, 0, 1)
    assert value(name, a_neg, t_neg, ids, **kwargs) > base + 1e-3


@pytest.mark.parametrize("name,kwargs", [("infonce", {"positives": "spread"}), ("supcon", {}), ("pair_loss", {})])
def test_same_clip_pairs_count_as_positives_where_documented(name, kwargs):
    a, t, ids = batch(3)
    a0, t0 = with_private_dim(a, t, 0, 0, c=0.0)
    a_same, t_same = with_private_dim(a, t, 0, 2)
    assert value(name, a_same, t_same, ids, **kwargs) != pytest.approx(value(name, a0, t0, ids, **kwargs))


# ----------------------------------------------------------------- contract and registry


# terms registered by atrlib.losses.crossmodal (cross-modal, distillation, soft relevance)
OBJECTIVE_TERMS = ["acml", "mlml", "atc", "atm", "atg", "tag_msle", "tag_mae", "claip", "distill", "listwise"]


def test_registry_lists_every_loss():
    import atrlib.losses.crossmodal  # noqa: F401  (registers the cross-modal terms)

    assert set(LOSSES.names()) == set(ALL) | set(OBJECTIVE_TERMS)


def test_unknown_loss_raises_keyerror_listing_names():
    with pytest.raises(KeyError) as e:
        get_loss("nope")
    assert "infonce" in str(e.value) and "pair_loss" in str(e.value)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("clips", [CLIPS, [5] * 6], ids=["duplicates", "one-clip"])
def test_every_loss_returns_named_finite_scalars(name, clips):
    a, t, ids = batch(2, clips=clips, dim=16, dtype=torch.float32)
    loss = get_loss(name)
    assert isinstance(loss, torch.nn.Module)
    terms = loss(a, t, ids, torch.tensor(1 / 0.07))
    assert isinstance(terms, dict) and terms
    for k, v in terms.items():
        assert isinstance(k, str) and isinstance(v, torch.Tensor)
        assert v.ndim == 0 and v.dtype == torch.float32 and torch.isfinite(v), k
    total(terms).backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(t.grad).all()


def test_shape_mismatch_is_reported():
    a, t, ids = batch()
    with pytest.raises(ValueError, match="clip_ids"):
        get_loss("infonce")(a, t, ids[:-1], torch.tensor(1.0))
    with pytest.raises(ValueError, match="text_emb"):
        get_loss("triplet_sum")(a, t[:, :3], ids, None)
