"""The torch engines' learning-algorithm mitigations (issue 24, engines/torch_mitigations.py): the L2-SP and EWC
anchors to generation 0's weights, distillation from generation 0's model and per-example loss weights, in the
vae and opt engines. Each is checked against an independent computation, by its effect on a tiny model, by
being the plain fit bit for bit where it is off, and by a resumed run's rows equalling an uninterrupted run's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import WIKI_TEST, WIKI_TRAIN, run_loop, tiny_opt

from collapse_tui.engines.vae import VAEEngine

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from collapse_tui.engines import torch_mitigations as tm  # noqa: E402
from collapse_tui.engines import vae_torch as vt  # noqa: E402
from collapse_tui.engines.lm_train import block_loss  # noqa: E402

# 300 8x8 digits, a small VAE, 40 Adam steps a fit at a large rate: a fit takes a fraction of a second
VAE = {"source": "digits", "train_count": 300, "test_count": 200, "latent": 4, "capacity": 4, "epochs": 4, "lr": 1e-2}
VAE["batch"] = 32
OPT = dict(batch=16, epochs=2, lr=5e-3, lr_min=1e-4, warmup_steps=3, tiny_layers=1, tiny_hidden=16, tiny_heads=2)


def quiet(*_: object) -> None:
    pass


def rng(seed: int) -> list[np.random.Generator]:
    return [np.random.default_rng(seed)]


def flat(model) -> np.ndarray:
    """All trainable weights, in named_parameters' order, as float64."""
    return np.concatenate([p.detach().double().flatten().numpy() for _, p in model.named_parameters()])


@pytest.fixture(scope="module")
def vae():
    """(engine, generation 0's model, generation 1's training data: generation 0's samples)."""
    e = VAEEngine(VAE)
    ref = e.fit(e.real_data(rng(0)), rng(0), quiet).model
    return e, ref, e.sample(ref, 300, rng(1), quiet).samples


@pytest.fixture(scope="module")
def opt():
    """(engine, generation 0's model, generation 1's training data: the real blocks)."""
    e = tiny_opt(**OPT)
    real = e.real_data(rng(0))
    return e, e.fit(real, rng(0), quiet).model, real


def untrained(e):
    """A model of e's shape with its starting weights (other than the fixtures' trained ones)."""
    if isinstance(e, VAEEngine):
        return vt.new_vae(8, 8, e.params.latent, e.params.capacity, 5, torch.device("cpu"))
    return e.new_model()


def engine_with(base, train: dict):
    """base's engine class and params with these [train] keys, sharing base's real data (read once)."""
    e = type(base)(base.params, train=train)
    e._data = base._data
    return e


# --- the formulas ---------------------------------------------------------------------------------
def test_fisher_is_the_mean_squared_per_example_gradient_of_a_linear_model():
    """For loss 1/2 (w.x + b - y)^2 the per-example gradient is r x (and r for b), r the residual: the diagonal
    Fisher is mean(r^2 x^2), mean(r^2), computed here in numpy."""
    g = np.random.default_rng(3)
    x, y = g.standard_normal((50, 3)), g.standard_normal(50)
    model = torch.nn.Linear(3, 1).double()
    data = list(zip(torch.from_numpy(x), torch.from_numpy(y)))
    fisher = tm.fisher_diagonal(model, data, lambda m, xy: 0.5 * (m(xy[0])[0] - xy[1]).square())
    w, b = model.weight.detach().numpy()[0], float(model.bias.detach()[0])
    r = x @ w + b - y
    np.testing.assert_allclose(fisher["weight"].numpy()[0], (r[:, None] ** 2 * x**2).mean(0), rtol=1e-6)
    np.testing.assert_allclose(float(fisher["bias"]), (r**2).mean(), rtol=1e-6)


@pytest.mark.parametrize("name", ["vae", "opt"])
@pytest.mark.parametrize("kind", ["l2", "ewc"])
def test_penalty_is_half_the_strength_times_the_weighted_sum_of_squared_differences(name, kind, request):
    e, ref, _ = request.getfixturevalue(name)
    student = untrained(e)
    g = np.random.default_rng(4)
    f = {k: torch.from_numpy(g.gamma(0.5, size=p.shape).astype(np.float32)) for k, p in ref.named_parameters()}
    precision = f if kind == "ewc" else None
    anchor = tm.Anchor({k: p.detach() for k, p in ref.named_parameters()}, precision, 2.5)
    ones = np.ones(flat(ref).size)
    weight = np.concatenate([v.double().flatten().numpy() for v in f.values()]) if precision else ones
    expected = 0.5 * 2.5 * float((weight * (flat(student) - flat(ref)) ** 2).sum())
    assert anchor.penalty(student).item() == pytest.approx(expected, rel=1e-5)


def test_vae_distill_divergence_is_the_gaussian_and_bernoulli_kl(vae):
    e, teacher, _ = vae
    student = untrained(e)
    x = torch.from_numpy(e.dataset().test[:20])
    out = vt.forward_pass(student, x, vt.generator(0, torch.device("cpu")))
    got = vt.distill_divergence(out, teacher, x).detach().double().numpy()
    with torch.no_grad():  # independently, in float64 numpy
        mt, lt = (t.double().numpy() for t in teacher.encode(x))
        q = torch.sigmoid(teacher.decode_logits(out.z).double()).numpy().reshape(20, -1)
    ms, ls = out.mu.detach().double().numpy(), out.logvar.detach().double().numpy()
    enc = 0.5 * (ls - lt + (np.exp(lt) + (mt - ms) ** 2) / np.exp(ls) - 1).sum(1)
    p = torch.sigmoid(out.logits.detach().double()).numpy().reshape(20, -1)
    dec = (q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))).sum(1)
    np.testing.assert_allclose(got, enc + dec, rtol=1e-4, atol=1e-4)
    same = vt.forward_pass(teacher, x, vt.generator(0, torch.device("cpu")))
    assert np.abs(vt.distill_divergence(same, teacher, x).detach().numpy()).max() < 1e-4  # zero at a match


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_text_distillation_loss_is_the_mixture_of_nll_and_t2_kl_weighted_by_block(opt, temperature):
    e, teacher, real = opt
    student = e.new_model().eval()  # no dropout: the same logits twice
    ids = torch.from_numpy(real[0, :6].astype(np.int64))
    w = torch.tensor([0.5, 2.0, 1.0, 0.0, 1.5, 1.0])
    mit = tm.Mitigations(teacher=teacher.eval(), alpha=0.3, temperature=temperature)
    loss, data = block_loss(student(input_ids=ids).logits, ids, mit, w)
    with torch.no_grad():  # independently, in float64 numpy
        s, t = (m(input_ids=ids).logits[:, :-1].double().numpy() for m in (student, teacher))
    target = ids[:, 1:].numpy()

    def log_softmax(a: np.ndarray) -> np.ndarray:
        a = a - a.max(-1, keepdims=True)
        return a - np.log(np.exp(a).sum(-1, keepdims=True))

    nll = -np.take_along_axis(log_softmax(s), target[..., None], -1)[..., 0].mean(1)
    lp, lq = log_softmax(t / temperature), log_softmax(s / temperature)
    kl = (np.exp(lp) * (lp - lq)).sum(-1).mean(1) * temperature**2
    wn = w.double().numpy()
    assert loss.item() == pytest.approx((wn * (0.7 * nll + 0.3 * kl)).mean(), rel=1e-5)
    assert data.item() == pytest.approx((wn * nll).mean(), rel=1e-5)


def test_vae_weighted_batch_loss_is_the_weighted_sum_of_negative_elbos(vae):
    e, ref, _ = vae
    x = torch.from_numpy(e.dataset().test[:16])
    w = torch.from_numpy(np.random.default_rng(2).gamma(1.0, size=16).astype(np.float32))
    loss, data = vt.batch_loss(ref, x, vt.generator(0, torch.device("cpu")), tm.Mitigations(weights=w), w)
    each = vt.neg_elbo(ref, x, vt.generator(0, torch.device("cpu"))).detach().double().numpy()
    assert loss.item() == pytest.approx(float((w.double().numpy() * each).sum()), rel=1e-5)
    assert data.item() == loss.item()


# --- off is the plain fit, bit for bit -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["vae", "opt"])
def test_alpha_0_strength_0_and_unit_weights_are_the_plain_fit_bit_for_bit(name, request):
    e, ref, data = request.getfixturevalue(name)
    plain = e.fit(data, rng(7), quiet)
    fits = [
        engine_with(e, {"distill": 0.0}).fit(data, rng(7), quiet, reference=ref),
        engine_with(e, {"anchor": "l2", "anchor_strength": 0.0}).fit(data, rng(7), quiet, reference=ref),
        engine_with(e, {"anchor": "ewc", "anchor_strength": 0.0}).fit(data, rng(7), quiet, reference=ref),
        e.fit(data, rng(7), quiet, weights=np.ones((1, data.shape[1]))),
    ]
    for f in fits:
        assert f.losses == plain.losses
        assert np.array_equal(flat(f.model), flat(plain.model))
    on = engine_with(e, {"distill": 0.5}).fit(data, rng(7), quiet, reference=ref)
    assert not np.array_equal(flat(on.model), flat(plain.model))  # and on is not off


# --- what each buys on a tiny model --------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "strengths"), [("l2", (1e-9, 0.01, 1.0, 100.0)), ("ewc", (1e-9, 1.0, 100.0, 1e4))])
def test_a_stronger_anchor_keeps_the_student_nearer_generation_0(vae, kind, strengths):
    """An anchored student starts at generation 0's weights and takes 100 Adam steps on generation 1's data; its
    distance from them (Euclidean for L2-SP, Fisher-weighted for EWC) falls with every step of the strength, to
    under a fifth of the all but unanchored student's (strength 1e-9: the start alone)."""
    e, ref, data = vae
    f = e.fisher(ref)
    dist = []
    for s in strengths:
        eng = engine_with(e, {"anchor": kind, "anchor_strength": s})
        eng.params = dataclasses.replace(e.params, epochs=10)
        model = eng.fit(data, rng(8), quiet, reference=ref).model
        sq = {k: (p - ref.get_parameter(k)).detach().square() for k, p in model.named_parameters()}
        dist.append(float(sum((sq[k] if kind == "l2" else f[k] * sq[k]).sum() for k in sq).sqrt()))
    assert all(a > b for a, b in zip(dist, dist[1:])), dist
    assert dist[-1] < 0.2 * dist[0], dist


@pytest.mark.parametrize(
    "train", [{"anchor": "l2", "anchor_strength": 0.1}, {"anchor": "ewc", "anchor_strength": 10.0}]
)
def test_an_anchored_vae_keeps_generation_0s_test_elbo_where_replace_loses_it(vae, train):
    """Three generations after generation 0 on their own samples, two chains: the test ELBO per pixel of the last
    drifts from generation 0's by under half as much with the anchor as without, in each chain."""
    e, ref, _ = vae
    test = e.dataset().test
    nll0 = float(vt.neg_elbo_per_pixel(ref, test, 0).mean())
    drift = {}
    for label, eng in (("replace", e), ("anchored", engine_with(e, train))):
        drift[label] = []
        for chain in (100, 101):
            rngs, model = rng(chain), ref
            for _ in range(3):
                model = eng.fit(eng.sample(model, 300, rngs, quiet).samples, rngs, quiet, reference=ref).model
            drift[label].append(abs(float(vt.neg_elbo_per_pixel(model, test, 0).mean()) - nll0))
    assert all(a < 0.5 * r for a, r in zip(drift["anchored"], drift["replace"])), drift


def vae_divergence(student, teacher, e: VAEEngine) -> float:
    """What sampling and encoding see: the decoders' Bernoulli KL(teacher || student) summed over pixels, at 500
    fixed latents from the prior, plus the encoders' Gaussian KL on the real test images (means over both)."""
    z = torch.from_numpy(np.random.default_rng(0).standard_normal((500, student.latent), dtype=np.float32))
    x = torch.from_numpy(e.dataset().test)
    with torch.no_grad():
        q, p = (torch.sigmoid(m.decode_logits(z).double()) for m in (teacher, student))
        (mt, lt), (ms, ls) = ((a.double() for a in m.encode(x)) for m in (teacher, student))
    dec = (q * (q / p).log() + (1 - q) * ((1 - q) / (1 - p)).log()).flatten(1).sum(1).mean()
    enc = (0.5 * (ls - lt + (lt.exp() + (mt - ms).square()) / ls.exp() - 1)).sum(1).mean()
    return float(dec + enc)


def opt_divergence(student, teacher, e) -> float:
    """Mean KL(teacher || student) of the next-token distributions on the real test blocks."""
    ids = torch.from_numpy(e.dataset().test.astype(np.int64))
    with torch.no_grad():
        lp, lq = (torch.log_softmax(m.eval()(input_ids=ids).logits[:, :-1].double(), -1) for m in (teacher, student))
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


@pytest.mark.parametrize("name", ["vae", "opt"])
def test_distillation_at_alpha_1_brings_the_student_to_the_teacher(name, request):
    """Students trained on generation 1's data from three seeds: with alpha = 1 each one's divergence from the
    teacher on real test data is below every alpha = 0 student's, and the mean of the log ratio (paired by seed)
    is over 4 of its SEs."""
    e, teacher, data = request.getfixturevalue(name)
    measure = vae_divergence if name == "vae" else opt_divergence
    kl = {}
    for alpha in (0.0, 1.0):
        eng = engine_with(e, {"distill": alpha})
        kl[alpha] = np.array(
            [measure(eng.fit(data, rng(s), quiet, reference=teacher).model, teacher, e) for s in (11, 12, 13)]
        )
    log_ratio = np.log(kl[0.0] / kl[1.0])
    assert kl[1.0].max() < kl[0.0].min(), kl
    assert log_ratio.mean() > 4 * log_ratio.std(ddof=1) / np.sqrt(len(log_ratio)), kl


def test_weighting_the_real_images_up_fits_the_real_data_better(vae):
    """30 real images among 270 copies of one image (a collapsed generation, keep 10%): with real_weight 0.9 the
    real images carry 90% of the fit instead of 10%, and the test ELBO is better, for each of three seeds."""
    e, _, _ = vae
    real = e.real_data(rng(0))
    data = np.concatenate([real[:, :30], np.repeat(real[:, 30:31], 270, axis=1)], axis=1)
    w = np.full((1, 300), 0.1 * 300 / 270)
    w[0, :30] = 0.9 * 300 / 30
    test = e.dataset().test
    nll = {
        label: [
            float(vt.neg_elbo_per_pixel(e.fit(data, rng(s), quiet, weights=ws).model, test, 0).mean())
            for s in (1, 2, 3)
        ]
        for label, ws in (("count", None), ("weighted", w))
    }
    assert max(nll["weighted"]) < min(nll["count"]), nll


# --- resume ---------------------------------------------------------------------------------------------
SMALL_VAE = [
    "engine.train_count=300",
    "engine.test_count=100",
    "engine.capacity=4",
    "engine.latent=2",
    "engine.epochs=2",
]
SMALL_OPT = [
    f"engine.train='{WIKI_TRAIN}'",
    f"engine.test='{WIKI_TEST}'",
    "engine.max_chars=6000",
    "engine.block_size=16",
    "engine.vocab_size=300",
    "engine.tiny_layers=1",
    "engine.tiny_hidden=16",
    "engine.tiny_heads=2",
    "engine.pretrain_epochs=1",
    "engine.batch=16",
    "engine.gen_batch=64",
    "engine.num_beams=2",
]


@pytest.mark.parametrize(
    ("preset", "sets"),
    [
        ("vae-quick", [*SMALL_VAE, "train.anchor='l2'", "train.anchor_strength=0.1"]),
        ("vae-quick", [*SMALL_VAE, "train.anchor='ewc'", "train.anchor_strength=100.0"]),
        ("vae-quick", [*SMALL_VAE, "train.distill=0.5"]),
        ("vae-quick", [*SMALL_VAE, "data.mode='keep'", "data.real_weight=0.5"]),
        ("opt-tiny", [*SMALL_OPT, "train.anchor='ewc'", "train.anchor_strength=10.0", "train.distill=0.5"]),
    ],
)
def test_a_resumed_mitigated_run_gives_the_uninterrupted_runs_rows(tmp_path, preset, sets):
    """Stopped after generation 1 (EWC's Fisher computed from generation 0's model in memory) and resumed (computed
    again from the reloaded one): generation 2's rows are the same bits. A run without the mitigation differs (so
    it reached the fit: real_weight through the data modes' weights)."""
    sets = [*sets, "experiment.generations=3", "experiment.device='cpu'"]
    whole, state = run_loop(tmp_path / "whole", preset, sets)
    assert state == "finished"
    part, state = run_loop(tmp_path / "part", preset, sets, stop_after=1)
    assert state == "stopped" and {r["generation"] for r in part.read_metrics()} == {0, 1}
    _, state = run_loop(tmp_path, preset, [], resume_dir=part)
    assert state == "finished"
    assert part.metrics_path.read_text() == whole.metrics_path.read_text()
    unmitigated = [s for s in sets if not s.startswith(("train.", "data.real_weight"))]
    plain, _ = run_loop(tmp_path / "plain", preset, unmitigated, stop_after=1)
    rows = [[r for r in run.read_metrics() if r["generation"] == 1] for run in (whole, plain)]
    assert rows[0] != rows[1]
