"""The energy as an expression: composed terms against the presets' recipes and against formulas written
here; --set reaching every term parameter; a term registered in this file used from the CLI; batched
trials against separate runs; per-sample Adam against torch.optim.Adam."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cli import cli
from preimage.converters.onnx_torch.load import load_features
from preimage.invert import api, engine, presets, regularizers, terms
from preimage.invert.energy import State, evaluate
from preimage.invert.optimizers import Adam
from preimage.models import samples as bundled

from invert_nets import Net


def _setup(n=3):
    net = Net().double()
    torch.manual_seed(3)
    x0 = torch.randn(n, 3, 16, 16, dtype=torch.float64) * 50
    with torch.no_grad():
        t = net(x0)["a"]
    x = (torch.randn(n, 3, 16, 16, dtype=torch.float64) * 40).requires_grad_(True)
    return net, t, x


def _value_and_grad(energy, net, x):
    e = evaluate(energy, State(images=[x], features=net(x)))["energy"]
    (g,) = torch.autograd.grad(e.sum(), x)
    return e.detach(), g


def test_composed_energy_equals_the_paper_preset_and_its_formula():
    net, t, x = _setup()
    cfg = presets.get("mahendran2016")
    samples = [engine.Sample("a", t[i], seed=i, C=20.0) for i in range(3)]
    preset = presets.recipe(cfg, samples).energy
    mine = 20 * terms.feature_l2("a", t) + terms.bounded_range(alpha=6, B=80) + terms.tv(beta=2, V=80 / 6.5)
    e1, g1 = _value_and_grad(preset, net, x)
    e2, g2 = _value_and_grad(mine, net, x)
    np.testing.assert_allclose(e1.numpy(), e2.numpy(), rtol=1e-12)
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-10, atol=1e-14)
    # the formula, written out per sample
    phi = net(x)["a"].detach()
    xs = x.detach()
    for i in range(3):
        data = 20 * ((phi[i] - t[i]) ** 2).sum() / (t[i] ** 2).sum()
        n_alpha = ((xs[i] ** 2).sum(0) ** 3).sum() / (16 * 16 * 80.0 ** 6)
        dx = torch.nn.functional.pad(xs[i][:, :, 1:] - xs[i][:, :, :-1], (0, 1))
        dy = torch.nn.functional.pad(xs[i][:, 1:, :] - xs[i][:, :-1, :], (0, 0, 0, 1))
        tv = (dx ** 2 + dy ** 2).sum() / (16 * 16 * (80 / 6.5) ** 2)
        assert e2[i].item() == pytest.approx((data + n_alpha + tv).item(), rel=1e-12)


def test_composed_energy_equals_the_posenet_preset():
    net, t, x = _setup()
    cfg = presets.get("posenet2016")
    samples = [engine.Sample("a", t[i], seed=i, C=1.0) for i in range(3)]
    preset = presets.recipe(cfg, samples).energy
    mine = terms.l2_distance("a", t) + 1.95e-15 * terms.l6() + 4e-6 * terms.sqrt_tv()
    e1, g1 = _value_and_grad(preset, net, x)
    e2, g2 = _value_and_grad(mine, net, x)
    np.testing.assert_allclose(e1.numpy(), e2.numpy(), rtol=1e-12)
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-10, atol=1e-14)


def test_arithmetic_and_per_sample_weights():
    net, t, x = _setup()
    a, b = terms.feature_l2("a", t), terms.tv(beta=1.0)
    st = State(images=[x], features=net(x))
    w = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    np.testing.assert_allclose(evaluate(w * a - 0.5 * b, st)["energy"].detach().numpy(),
                               (w * a(st) - 0.5 * b(st)).detach().numpy(), rtol=1e-12)
    parts = evaluate(a + b, st)
    np.testing.assert_allclose(parts["data"].detach().numpy(), a(st).detach().numpy())
    np.testing.assert_allclose(parts["prior"].detach().numpy(), b(st).detach().numpy())
    # per-sample prior parameters: each sample's value is the value with its own parameter
    per = terms.tv(beta=[1.0, 2.0, 1.5])(st).detach()
    for i, beta in enumerate([1.0, 2.0, 1.5]):
        assert per[i].item() == pytest.approx(regularizers.tv(x[i:i + 1].detach(), beta=beta).item(), rel=1e-12)
    assert set((a + b).parameters()) >= {"tv.beta", "tv.V", "feature_l2.z"}


def test_notebook_form_runs_through_the_engine():
    net, t, _ = _setup(2)
    energy = 300 * terms.feature_l2("a", t) + terms.bounded_range(alpha=6, B=80) + terms.tv(beta=2)
    recipe = presets.with_energy(energy, presets.get("mahendran2016", iters=20, fine_iters=5), seeds=[0, 1], T=2,
                                 metrics={"normalized_error": terms.normalized_error("a", t)})
    res, interrupted = engine.optimize(net, recipe, (16, 16), dtype=torch.float64, progress=False)
    assert not interrupted and len(res) == 2 and res[0]["iterations"] == 25
    assert res[0]["energy"][-1] < res[0]["energy"][0] and res[0]["normalized_error"] is not None


def test_set_term_parameters_reach_the_recipe_and_are_refused_when_unknown():
    cfg = presets.coerce(presets.get("posenet2016"), "l6.p", "4")
    assert cfg.term("l6")["p"] == 4.0
    assert presets.coerce(presets.get("mahendran2016"), "tv.beta", "1").beta == 1.0  # one value, two spellings
    for key, text in [("l6.q", "1"), ("nosuch.p", "1"), ("l6.p", "x"), ("weight.nosuch", "1")]:
        with pytest.raises(Exception) as e:
            presets.coerce(presets.get("posenet2016"), key, text)
        assert "l6" in str(e.value) or "nosuch" in str(e.value) or "number" in str(e.value)
    assert "l6.p" in presets.parameter_names() and "weight.sqrt_tv" in presets.parameter_names()


@pytest.fixture
def tiny_onnx(tiny_posenet):
    return str(tiny_posenet / "posenet.onnx")


def _errors(out):
    return [r["normalized_error"] for r in json.loads((out / "metrics.json").read_text())["results"]]


def test_set_l6_p_changes_the_result(tiny_onnx, tmp_path):
    img = bundled.paths()[0]
    base = ["invert", "-m", tiny_onnx, "-l", "conv4", "--preset", "posenet2016", "--iters", "4", "-q",
            "--set", "fine_iters=0", "--set", "weight.l6=1e-9", img]
    outs = []
    for extra, name in [([], "p6"), (["--set", "l6.p=4"], "p4")]:
        r = CliRunner().invoke(cli, base + extra + ["-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        outs.append(_errors(tmp_path / name))
    assert outs[0] != outs[1]
    r = CliRunner().invoke(cli, base + ["--set", "l6.q=4", "-o", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "l6 has no parameter 'q'" in r.output


# A prior registered here, in a test file: no edit to the engine, the presets or the CLI.
@regularizers.prior("test_centre_pull")
def centre_pull(x, p=2.0):
    """sum |x|^p / (H W): pulls every pixel towards the mean colour."""
    return x.abs().pow(p).flatten(1).sum(1) / (x.shape[-1] * x.shape[-2])


def test_a_term_registered_in_a_test_file_is_usable_from_the_cli(tiny_onnx, tmp_path):
    img = bundled.paths()[0]
    base = ["invert", "-m", tiny_onnx, "-l", "conv4", "--iters", "3", "--set", "fine_iters=0", "-q", img]
    got = {}
    for name, extra in [("plain", []), ("pull", ["--set", "weight.test_centre_pull=50", "--set", "test_centre_pull.p=1"])]:
        r = CliRunner().invoke(cli, base + extra + ["-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        got[name] = json.loads((tmp_path / name / "metrics.json").read_text())["results"][0]
    assert got["plain"]["energy_curve"][0] != pytest.approx(got["pull"]["energy_curve"][0])
    help_text = CliRunner().invoke(cli, ["invert", "--help"]).output
    assert "test_centre_pull.p" in help_text.replace("\n", " ").replace("  ", " ") or "test_centre_pull.p" in help_text


@pytest.mark.parametrize("preset,trials", [
    ("posenet2016", [{"lr": 10.0}, {"lr": 30.0, "weight.sqrt_tv": 1e-5}, {"clip_percentile": 10.0}, {"l6.p": 4}]),
    ("mahendran2016", [{"C": 20}, {"C": 300, "B": 60}, {"eta0": 300.0, "tv.beta": 1.0}, {"weight.tv": 0.0}]),
])
def test_batched_trials_equal_separate_runs(tiny_onnx, preset, trials):
    # float64: in float32 the convolutions' rounding depends on the batch (algorithm choice), and the
    # percentile clipping turns a last-bit difference into a pixel zeroed or not
    net = load_features(tiny_onnx, outputs=["conv4"], dtype=torch.float64)
    imgs = bundled.paths()[:2]
    kw = dict(preset=preset, iters=4, overrides={"fine_iters": "2"}, device="cpu", progress=False)
    batched = api.invert(net, ["conv4"], imgs, trials=trials, **kw)
    assert len(batched.results) == len(trials) * len(imgs)
    assert all(r["batch_size"] == len(trials) * len(imgs) for r in batched.results)  # one batch
    for k, t in enumerate(trials):
        sep = api.invert(net, ["conv4"], imgs, **dict(kw, overrides=dict(kw["overrides"], **{
            a: str(b) for a, b in t.items()})))
        mine = [r for r in batched.results if r["trial"] == k]
        for a, b in zip(mine, sep.results):
            assert a["image"] == b["image"]
            np.testing.assert_allclose(a["x"].numpy(), b["x"].numpy(), rtol=1e-9, atol=1e-9 * float(b["x"].abs().max()))
            assert a["normalized_error"] == pytest.approx(b["normalized_error"], rel=1e-9)
            assert a["relative_loss"] == pytest.approx(b["relative_loss"], rel=1e-9)


def test_per_sample_adam_equals_torch_adam_sample_by_sample():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    target = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    lrs, b2 = [0.1, 0.3, 0.05], [0.99, 0.999, 0.9]
    mine = Adam(torch.tensor(lrs, dtype=torch.float64).view(-1, 1, 1, 1),
                betas=(0.9, torch.tensor(b2, dtype=torch.float64).view(-1, 1, 1, 1)), eps=1e-8)
    ps = [x[i].clone().requires_grad_(True) for i in range(3)]
    refs = [torch.optim.Adam([p], lr=lr, betas=(0.9, b), eps=1e-8) for p, lr, b in zip(ps, lrs, b2)]
    y = x.clone()
    for _ in range(15):
        mine.step(y, 4 * (y - target) ** 3)
        for i, (p, opt) in enumerate(zip(ps, refs)):
            opt.zero_grad()
            p.grad = 4 * (p.detach() - target[i]) ** 3
            opt.step()
    for i in range(3):
        np.testing.assert_allclose(y[i].numpy(), ps[i].detach().numpy(), rtol=1e-10, atol=1e-12)


def test_maximize_says_which_M_it_used_when_the_unit_never_fires():
    class Silent(torch.nn.Module):
        def forward(self, x):
            a = x.mean(1, keepdim=True).expand(-1, 2, -1, -1).clone()
            a[:, 1] = -1.0  # unit 1 never fires
            return {"a": a}

    run = api.maximize(Silent(), ["a"], [0, 1], bundled.paths()[:1], iters=1, overrides={"fine_iters": "0"},
                       size=(8, 8), device="cpu", progress=False)
    by_unit = {r["unit"]: r for r in run.results}
    assert by_unit[0]["M_source"].startswith("the unit's largest value")
    assert "never fires" in by_unit[1]["M_source"] and "the layer's largest value" in by_unit[1]["M_source"]
    assert by_unit[1]["M"] >= by_unit[0]["M"] > 0  # the layer's maximum over all locations, not a silent 1


def test_caricature_reports_the_gain_not_an_error(tiny_onnx, tmp_path):
    r = CliRunner().invoke(cli, ["caricature", "-m", tiny_onnx, "-l", "conv4", "--iters", "5", "--set", "fine_iters=0",
                                 "-q", "-o", str(tmp_path), bundled.paths()[0]])
    assert r.exit_code == 0, r.output
    assert "mean normalised error" not in r.output and "gain in the chosen components" in r.output
    res = json.loads((tmp_path / "metrics.json").read_text())["results"][0]
    assert res["gain"] > 1.0  # the caricature holds more of what the layer selected than the photo
