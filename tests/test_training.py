"""The loss modules and the one training loop of ``antigravity.adaptation.training``.

Expected loss values are recomputed independently with numpy on tiny inputs."""

import numpy as np
import pytest
import torch

from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.adaptation.training import (
    BlendedBatches,
    BlendedLoss,
    IdentityRegularizer,
    ListwiseData,
    ListwiseKLLoss,
    ListwiseTargets,
    ShuffledBatches,
    VectorCosineLoss,
    VectorData,
    VectorTargets,
    fit,
    fit_blend,
    fit_listwise,
)
from antigravity.core.errors import AdaptationError


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _full_adapter(M: np.ndarray) -> ResidualAdapter:
    """A full-rank adapter ``x ↦ x + M·x``."""
    a = ResidualAdapter(len(M), len(M))
    with torch.no_grad():
        a.full.weight.copy_(torch.from_numpy(M.astype(np.float32)))
    return a


def _t(x, dtype=torch.float32):
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def _log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


# ----------------------------------------------------------------------------- loss values


def test_vector_loss_hand_checked_value():
    # identity adapters: unit([3, 4]) = [.6, .8] -> ‖[−.4, .8]‖² = .8; unit([1, 0]) vs [0, 1] -> 2
    ident = ResidualAdapter(2, 2)
    loss = VectorCosineLoss(ident, ident)
    value = loss(_t([[3, 4], [1, 0]]), _t([[1, 0], [0, 1]]), _t([1, 3]))
    assert value.item() == pytest.approx((1 * 0.8 + 3 * 2.0) / 4, abs=1e-6)
    # no weights: the plain mean
    assert loss(_t([[3, 4], [1, 0]]), _t([[1, 0], [0, 1]])).item() == pytest.approx(1.4, abs=1e-6)


def test_vector_loss_routes_query_and_document_rows():
    rng = np.random.default_rng(0)
    Mq, Md = 0.3 * rng.standard_normal((4, 4)), 0.3 * rng.standard_normal((4, 4))
    X = rng.standard_normal((5, 4)).astype(np.float32)
    T = _unit(rng.standard_normal((5, 4))).astype(np.float32)
    W = np.array([1.0, 2.0, 0.5, 1.0, 3.0], np.float32)
    qrows = np.array([True, False, True, False, False])
    Y = np.where(qrows[:, None], X + X @ Mq.T, X + X @ Md.T)
    expected = (W * ((_unit(Y) - T) ** 2).sum(1)).sum() / W.sum()
    got = VectorCosineLoss(_full_adapter(Mq), _full_adapter(Md))(_t(X), _t(T), _t(W), torch.from_numpy(qrows))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # one side missing: the other adapter moves every row, with or without a query mask
    only_d = (W * ((_unit(X + X @ Md.T) - T) ** 2).sum(1)).sum() / W.sum()
    for mask in (None, torch.from_numpy(qrows)):
        assert VectorCosineLoss(None, _full_adapter(Md))(_t(X), _t(T), _t(W), mask).item() == pytest.approx(only_d, rel=1e-5)


def _listwise_inputs(seed=0, b=3, N=6, K=4, d=5):
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((b, d)).astype(np.float32)
    D = rng.standard_normal((N, d)).astype(np.float32)
    cand = np.stack([rng.permutation(N)[:K] for _ in range(b)]).astype(np.int64)
    z = rng.standard_normal((b, K))
    P = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)
    hard = np.zeros((b, K), np.float32)
    hard[0, [0, 2]] = 1
    hard[2, 1] = 1  # query 1 has no relevant candidate: its CE term is 0 (divided by max(1, 0))
    return Q, D, cand, P, hard


def _numpy_listwise(Q, D, cand, P, T, hard=None, alpha=0.0):
    s = _unit(Q) @ _unit(D).T
    s = (s if cand is None else np.take_along_axis(s, cand, 1)) / T
    logp = _log_softmax(s)
    kl = (P * (np.log(P) - logp)).sum(1).mean() * T**2
    if hard is None or alpha == 0:
        return kl
    ce = -(hard * logp).sum(1) / np.maximum(hard.sum(1), 1)
    return alpha * ce.mean() + (1 - alpha) * kl


def test_listwise_kl_hand_checked_value():
    # one query, two candidates with cosines 1 and 0, T = 1: q = softmax([1, 0]); P = [.5, .5]
    q = np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum()
    expected = 0.5 * np.log(0.5 / q[0]) + 0.5 * np.log(0.5 / q[1])
    loss = ListwiseKLLoss(None, None, temperature=1.0)
    assert loss(_t([[1, 0]]), _t([[2, 0], [0, 3]]), None, _t([[0.5, 0.5]])).item() == pytest.approx(expected, abs=1e-6)
    # T = 0.5 scales the logits by 2 and the KL by T² = 0.25
    q2 = np.exp([2.0, 0.0]) / np.exp([2.0, 0.0]).sum()
    expected2 = 0.25 * (0.5 * np.log(0.5 / q2[0]) + 0.5 * np.log(0.5 / q2[1]))
    loss2 = ListwiseKLLoss(None, None, temperature=0.5)
    assert loss2(_t([[1, 0]]), _t([[2, 0], [0, 3]]), None, _t([[0.5, 0.5]])).item() == pytest.approx(expected2, abs=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("with_cand", [True, False])
def test_listwise_kl_matches_numpy(alpha, with_cand):
    Q, D, cand, P, hard = _listwise_inputs()
    if not with_cand:
        cand, hard = None, np.eye(3, 6, dtype=np.float32)
        z = np.random.default_rng(1).standard_normal((3, 6))
        P = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)
    rng = np.random.default_rng(2)
    Mq, Md = 0.2 * rng.standard_normal((5, 5)), 0.2 * rng.standard_normal((5, 5))
    expected = _numpy_listwise(Q + Q @ Mq.T, D + D @ Md.T, cand, P, 0.2, hard, alpha)
    loss = ListwiseKLLoss(_full_adapter(Mq), _full_adapter(Md), temperature=0.2, alpha=alpha)
    got = loss(_t(Q), _t(D), None if cand is None else torch.from_numpy(cand), _t(P), _t(hard))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # alpha = 0 ignores the hard labels; without hard labels alpha is ignored
    kl = _numpy_listwise(Q + Q @ Mq.T, D + D @ Md.T, cand, P, 0.2)
    assert loss(_t(Q), _t(D), None if cand is None else torch.from_numpy(cand), _t(P)).item() == pytest.approx(kl, rel=1e-5)


def test_identity_regulariser_counts_a_shared_adapter_once():
    rng = np.random.default_rng(3)
    M1, M2 = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    a, b = _full_adapter(M1), _full_adapter(M2)
    assert IdentityRegularizer([a, b, None], 0.1)().item() == pytest.approx(0.1 * ((M1**2).sum() + (M2**2).sum()), rel=1e-5)
    assert IdentityRegularizer([a, a], 0.1)().item() == pytest.approx(0.1 * (M1**2).sum(), rel=1e-5)
    # measured from the anchor: a re-anchored adapter has zero penalty until it moves
    a.set_anchor()
    assert IdentityRegularizer([a], 0.1)().item() == 0.0


# ----------------------------------------------------------------------------- configs and composition


def test_get_config_dict_round_trips():
    Q, D, cand, P, hard = _listwise_inputs()
    qa, da = _full_adapter(0.1 * np.ones((5, 5))), ResidualAdapter(5, 2)
    args = (_t(Q), _t(D), torch.from_numpy(cand), _t(P), _t(hard))
    lw = ListwiseKLLoss(qa, da, temperature=0.3, alpha=0.4)
    assert lw.get_config_dict() == {"temperature": 0.3, "alpha": 0.4}
    assert ListwiseKLLoss(qa, da, **lw.get_config_dict())(*args).item() == lw(*args).item()
    vec = VectorCosineLoss(qa, da)
    assert vec.get_config_dict() == {}
    X, T = _t(Q), _t(_unit(P @ np.ones((4, 5))))
    assert VectorCosineLoss(qa, da, **vec.get_config_dict())(X, T).item() == vec(X, T).item()
    reg = IdentityRegularizer([qa, da], 0.01)
    assert reg.get_config_dict() == {"weight": 0.01}
    assert IdentityRegularizer([qa, da], **reg.get_config_dict())().item() == reg().item()
    bl = BlendedLoss(vec, lw, teacher_weight=0.25)
    assert bl.get_config_dict() == {"teacher_weight": 0.25}
    assert BlendedLoss(vec, lw, **bl.get_config_dict())((X, T), args).item() == bl((X, T), args).item()


class _Explodes(torch.nn.Module):
    def forward(self, *args):
        raise AssertionError("this term must not be evaluated")


def test_blended_loss_endpoints_and_mixture():
    Q, D, cand, P, hard = _listwise_inputs()
    qa, da = _full_adapter(0.1 * np.eye(5)), _full_adapter(-0.2 * np.eye(5))
    h = VectorCosineLoss(qa, da)
    t = ListwiseKLLoss(qa, da, temperature=0.1)
    hb = (_t(Q), _t(_unit(np.random.default_rng(5).standard_normal((3, 5)))))
    tb = (_t(Q), _t(D), torch.from_numpy(cand), _t(P))
    lh, lt = h(*hb).item(), t(*tb).item()
    assert lh > 0 and lt > 0
    assert BlendedLoss(h, t, 0.0)(hb, tb).item() == lh
    assert BlendedLoss(h, t, 1.0)(hb, tb).item() == lt
    assert BlendedLoss(h, t, 0.25)(hb, tb).item() == pytest.approx(0.75 * lh + 0.25 * lt, rel=1e-6)
    # the skipped term is never evaluated; a missing term or batch counts as 0
    assert BlendedLoss(h, _Explodes(), 0.0)(hb, tb).item() == lh
    assert BlendedLoss(_Explodes(), t, 1.0)(hb, tb).item() == lt
    assert BlendedLoss(None, t, 0.5)(None, tb).item() == pytest.approx(0.5 * lt, rel=1e-6)
    assert BlendedLoss(h, None, 0.0)(hb, None).item() == lh


# ----------------------------------------------------------------------------- batches


def test_blended_batches_schedule():
    rng = np.random.default_rng(0)
    d, N = 4, 9
    docs = rng.standard_normal((N, d)).astype(np.float32)
    vec = VectorData(VectorTargets(rng.standard_normal((5, d)).astype(np.float32), _unit(rng.standard_normal((5, d))).astype(np.float32)))
    teacher = ListwiseData(ListwiseTargets(rng.standard_normal((11, d)).astype(np.float32), None, np.full((11, N), 1 / N, np.float32)), docs)
    batches = list(BlendedBatches(vec, teacher, 4).epoch(np.random.default_rng(1)))
    assert len(batches) == 3  # ⌈max(5, 11) / 4⌉
    # offsets 0, 4 and 8 mod 5 = 3 into a 5-row permutation, up to 4 rows each (no wrap-around)
    assert [len(hb[0]) for hb, _ in batches] == [4, 1, 2]
    assert all(len(tb[0]) == 4 for _, tb in batches)
    only_h = list(BlendedBatches(vec, None, 4).epoch(np.random.default_rng(1)))
    assert [tb for _, tb in only_h] == [None, None]


def test_shuffled_batches_cover_every_row_once_per_epoch():
    data = VectorTargets(np.arange(14, dtype=np.float32)[:, None].repeat(2, 1), np.ones((14, 2), np.float32))
    batches = list(ShuffledBatches(VectorData(data), 4).epoch(np.random.default_rng(0)))
    assert [len(b[0]) for b in batches] == [4, 4, 4, 2]
    assert sorted(torch.cat([b[0][:, 0] for b in batches]).tolist()) == list(range(14))


# ----------------------------------------------------------------------------- the loop


def _problem(seed=0, d=6, N=15, m=12, K=5):
    rng = np.random.default_rng(seed)
    docs = rng.standard_normal((N, d)).astype(np.float32)
    cand = np.stack([rng.permutation(N)[:K] for _ in range(m)]).astype(np.int64)
    z = 3 * rng.standard_normal((m, K))
    P = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)
    return ListwiseTargets(rng.standard_normal((m, d)).astype(np.float32), cand, P), docs


def test_one_training_step_lowers_the_loss():
    data, docs = _problem()
    q = ResidualAdapter(6, 6)
    loss = ListwiseKLLoss(q, None, temperature=0.5)
    res = fit(q, None, loss, ShuffledBatches(ListwiseData(data, docs), batch_size=len(data)), epochs=1, lr=1e-2, weight_decay=0.0, identity_reg=0.0, seed=0)
    assert len(res.curve) == 1
    assert res.loss_after < res.loss_before
    # loss_before is the untrained (identity) objective; loss_after the trained one
    ident = ListwiseKLLoss(None, None, temperature=0.5)(*ListwiseData(data, docs).full()).item()
    assert res.loss_before == pytest.approx(ident, rel=1e-6)
    assert res.loss_after == pytest.approx(loss(*ListwiseData(data, docs).full()).item(), rel=1e-6)


def test_fit_includes_regulariser_and_stops_early():
    data, docs = _problem(1)
    q, d = _full_adapter(0.1 * np.eye(6)), ResidualAdapter(6, 2)
    seen = []

    def early_stop(epoch):
        seen.append(epoch)
        return epoch == 1

    loss = ListwiseKLLoss(q, d, temperature=0.5)
    batches = ShuffledBatches(ListwiseData(data, docs), 5)
    res = fit(q, d, loss, batches, epochs=10, lr=1e-3, weight_decay=0.0, identity_reg=0.5, seed=0, early_stop=early_stop)
    assert seen == [0, 1] and len(res.curve) == 2
    with torch.no_grad():
        assert res.loss_after == pytest.approx((loss(*batches.full()) + 0.5 * (q.delta_norm() + d.delta_norm())).item(), rel=1e-6)
    none = fit(q, d, loss, batches, epochs=0, lr=1e-3, weight_decay=0.0, identity_reg=0.5, seed=0)
    assert none.curve == [] and none.loss_after == none.loss_before


def test_fit_is_seeded_and_a_shared_adapter_trains_once():
    data, docs = _problem(2)
    runs = []
    for _ in range(2):
        a = _full_adapter(np.zeros((6, 6)))
        res = fit_listwise(a, a, data, docs, temperature=0.5, epochs=3, lr=1e-2, batch_size=4, weight_decay=0.0, identity_reg=1e-3, seed=3)
        runs.append((res.curve, a.full.weight.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][0][-1] < fit_listwise(_full_adapter(np.zeros((6, 6))), None, data, docs, temperature=0.5, epochs=0, lr=1e-2, batch_size=4, weight_decay=0.0, identity_reg=1e-3, seed=3).loss_before


def test_fit_aborts_on_non_finite_loss_and_inputs():
    data, docs = _problem(3)
    with pytest.raises(AdaptationError, match="non-finite"):
        fit_listwise(ResidualAdapter(6, 6), None, data, docs, temperature=0.5, epochs=2, lr=1e30, batch_size=4, weight_decay=0.0, identity_reg=1.0, seed=0)
    data.probs[0, 0] = np.nan
    with pytest.raises(AdaptationError, match="NaN"):
        fit_listwise(ResidualAdapter(6, 6), None, data, docs, temperature=0.5, epochs=2, lr=1e-3, batch_size=4, weight_decay=0.0, identity_reg=1.0, seed=0)


def _golden_case():
    rng = np.random.default_rng(0)
    d, N = 8, 12
    docs = rng.standard_normal((N, d)).astype(np.float32)
    X = rng.standard_normal((10, d)).astype(np.float32)
    t = _unit(rng.standard_normal((10, d))).astype(np.float32)
    vec = VectorTargets(X, t, np.linspace(0.5, 1.5, 10).astype(np.float32), np.arange(10) % 3 == 0)
    z = rng.standard_normal((7, 5)).astype(np.float32)
    p = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)
    cand = np.stack([rng.permutation(N)[:5] for _ in range(7)])
    teacher = ListwiseTargets(rng.standard_normal((7, d)).astype(np.float32), cand, p)
    return d, docs, vec, teacher


def test_training_numbers_unchanged_by_the_refactor():
    """Per-epoch curves recorded with the training code before losses became modules (same
    inputs, seeds, batch order): a change to RNG consumption or batching moves them."""
    d, docs, vec, teacher = _golden_case()
    torch.manual_seed(0)
    q, dd = ResidualAdapter(d, 2), ResidualAdapter(d, 2)
    blend = fit_blend(q, dd, vec, teacher, docs, teacher_weight=0.3, temperature=0.1, epochs=3, lr=1e-2, batch_size=4, weight_decay=0.0, identity_reg=1e-3, seed=7)
    np.testing.assert_allclose(blend.curve, [1.4589990377426147, 1.4412333965301514, 1.4211770296096802], rtol=1e-6)
    torch.manual_seed(0)
    q, dd = ResidualAdapter(d, 2), ResidualAdapter(d, 2)
    lw = fit_listwise(q, dd, teacher, docs, temperature=0.1, epochs=3, lr=1e-2, batch_size=3, weight_decay=0.0, identity_reg=1e-3, seed=7)
    np.testing.assert_allclose(lw.curve, [0.015709614381194115, 0.015075907111167908, 0.014316882938146591], rtol=1e-6)


def test_fit_blend_without_teacher_term_is_fit_listwise():
    data, docs = _problem(4)
    teacher, _ = _problem(5)
    out = []
    for call in (
        lambda a: fit_blend(a, None, data, teacher, docs, teacher_weight=0.0, temperature=0.5, epochs=2, lr=1e-2, batch_size=100, weight_decay=0.0, identity_reg=1e-3, seed=1),
        lambda a: fit_listwise(a, None, data, docs, temperature=0.5, epochs=2, lr=1e-2, batch_size=64, weight_decay=0.0, identity_reg=1e-3, seed=1),
    ):
        a = _full_adapter(np.zeros((6, 6)))
        out.append((call(a).curve, a.full.weight.detach().clone()))
    assert out[0][0] == out[1][0] and torch.equal(out[0][1], out[1][1])
