"""Local baselines: Captum attributions against analytic oracles, the attributions file, the flip task's inputs,
and the whole CLI chain on the paper's ConvMixers (intervene -> sweep -> attribute -> flip-task -> report)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import one_line_error, run_cli

import epg_core as E

pytest.importorskip("torch")
pytest.importorskip("captum")
pytest.importorskip("skimage")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from epg_bridges.baselines import (  # noqa: E402
    Attribution,
    AttributionKey,
    Context,
    flip_task_table,
    list_attributions,
    make_method,
    read_attributions,
    resolve_layer,
    write_attributions,
)


def _context(model: nn.Module, grey: float = 0.0, batch_size: int = 64, seed: int = 0) -> Context:
    return Context(model=model.eval(), grey=torch.full((1, 3, 1, 1), grey),
                   to_image=lambda x: (x.detach().permute(0, 2, 3, 1).numpy() * 0.5 + 0.5),
                   layer=resolve_layer(model, None)[0], layer_name=resolve_layer(model, None)[1],
                   batch_size=batch_size, seed=seed)


def _linear(h: int, w: int, seed: int = 0) -> tuple[nn.Module, np.ndarray]:
    """A linear model on [3, h, w] inputs with 2 outputs; its weights as [2, 3, h, w]."""
    torch.manual_seed(seed)
    lin = nn.Linear(3 * h * w, 2).double()
    model = nn.Sequential(nn.Flatten(), lin)
    return model, lin.weight.detach().numpy().reshape(2, 3, h, w)


def _inputs(n: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, (n, 3, h, w)))


# --------------------------------------------------------------------------- analytic oracles


@pytest.mark.parametrize("baseline, grey", [("zero", 0.0), ("grey", 0.3), ("mean", 0.0)])
def test_integrated_gradients_of_a_linear_model_is_input_times_weight(baseline: str, grey: float) -> None:
    model, w = _linear(6, 5)
    x = _inputs(3, 6, 5)
    method = make_method("integrated-gradients", {"steps": "8", "baseline": baseline})
    maps = method.maps(x, 1, _context(model, grey))
    xn = x.numpy()
    b = {"zero": np.zeros_like(xn), "grey": np.full_like(xn, grey),
         "mean": np.broadcast_to(xn.mean(axis=(2, 3), keepdims=True), xn.shape)}[baseline]
    expected = ((xn - b) * w[1]).sum(axis=1)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)
    # completeness: the map sums to output(x) - output(baseline)
    with torch.no_grad():
        gap = (model(x)[:, 1] - model(torch.from_numpy(np.ascontiguousarray(b)))[:, 1]).numpy()
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), gap, rtol=1e-5, atol=1e-6)


def test_deeplift_of_a_linear_model_is_input_times_weight() -> None:
    model, w = _linear(4, 7, seed=3)
    x = _inputs(2, 4, 7)
    maps = make_method("deeplift", {"baseline": "grey"}).maps(x, 0, _context(model, 0.25))
    np.testing.assert_allclose(maps, ((x.numpy() - 0.25) * w[0]).sum(axis=1), rtol=1e-5, atol=1e-6)


def test_saliency_of_a_linear_model_is_abs_weight_broadcast() -> None:
    model, w = _linear(5, 5, seed=2)
    x = _inputs(4, 5, 5)
    maps = make_method("saliency").maps(x, 1, _context(model))
    np.testing.assert_allclose(maps, np.broadcast_to(np.abs(w[1]).sum(axis=0), (4, 5, 5)), rtol=1e-6)
    signed = make_method("saliency", {"abs": "false"}).maps(x, 1, _context(model))
    np.testing.assert_allclose(signed, np.broadcast_to(w[1].sum(axis=0), (4, 5, 5)), rtol=1e-6)


@pytest.mark.parametrize("window, stride, size", [(5, 4, 13), (3, 2, 9), (4, 4, 12)])
def test_occlusion_of_a_linear_model_is_the_window_sums(window: int, stride: int, size: int) -> None:
    model, w = _linear(size, size, seed=4)
    x = _inputs(2, size, size, seed=5)
    grey = 0.2
    method = make_method("occlusion", {"window": str(window), "stride": str(stride), "baseline": "grey"})
    maps = method.maps(x, 0, _context(model, grey, batch_size=7))
    # analytic: every window position's output drop, averaged over the windows that cover each pixel
    contrib = ((x.numpy() - grey) * w[0]).sum(axis=1)  # [B, H, W]
    total = np.zeros_like(contrib)
    count = np.zeros((size, size))
    starts = range(0, size - window + 1, stride)
    for i in starts:
        for j in starts:
            drop = contrib[:, i:i + window, j:j + window].sum(axis=(1, 2))
            total[:, i:i + window, j:j + window] += drop[:, None, None]
            count[i:i + window, j:j + window] += 1
    assert count.min() > 0  # the cases cover every pixel
    np.testing.assert_allclose(maps, total / count, rtol=1e-6, atol=1e-9)


class _SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),
                                      nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_saliency_of_a_cnn_equals_torch_autograd() -> None:
    torch.manual_seed(0)
    model = _SmallCNN().double().eval()
    x = _inputs(3, 16, 16, seed=8)
    maps = make_method("saliency").maps(x, 2, _context(model))
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xg)[:, 2].sum(), xg)
    np.testing.assert_allclose(maps, grad.abs().sum(dim=1).numpy(), rtol=1e-6, atol=1e-12)


def test_guided_gradcam_uses_the_last_convolution_and_a_named_layer() -> None:
    torch.manual_seed(0)
    model = _SmallCNN().double().eval()
    assert resolve_layer(model, None)[1] == "features.2"
    x = _inputs(2, 16, 16)
    maps = make_method("guided-gradcam").maps(x, 0, _context(model))
    assert maps.shape == (2, 16, 16) and np.all(np.isfinite(maps)) and np.any(maps != 0)
    with pytest.raises(E.UsageError, match="no layer"):
        resolve_layer(model, "features.9")


@pytest.mark.parametrize("name", ["lime", "kernel-shap"])
def test_superpixel_methods_are_seeded_and_constant_per_superpixel(name: str) -> None:
    model, _ = _linear(24, 24, seed=6)
    blocks = np.random.default_rng(9).uniform(-1, 1, (2, 3, 4, 4))
    x = torch.from_numpy(np.kron(blocks, np.ones((1, 1, 6, 6))))  # 16 flat patches: SLIC finds real segments
    method = make_method(name, {"segments": "12", "samples": "30"})
    a = method.maps(x, 1, _context(model, seed=3, batch_size=8))
    b = method.maps(x, 1, _context(model, seed=3, batch_size=5))  # batching changes nothing
    c = method.maps(x, 1, _context(model, seed=4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    from epg_bridges.baselines._superpixels import slic_mask

    mask = slic_mask(_context(model).to_image(x[:1])[0], 12, 1.0)[0, 0].numpy()
    for label in np.unique(mask):
        assert np.ptp(a[0][mask == label]) == 0  # one value per superpixel
    assert len(np.unique(mask)) > 4 and len(np.unique(a[0])) > 1


def test_method_options_are_checked() -> None:
    with pytest.raises(E.UsageError, match="valid: baseline, stride, window"):
        make_method("occlusion", {"size": "3"})
    with pytest.raises(E.UsageError, match="expected a int"):
        make_method("occlusion", {"window": "big"})
    with pytest.raises(E.UsageError, match="must be > 0"):
        make_method("lime", {"samples": "0"})
    with pytest.raises(E.UsageError, match="unknown method"):
        make_method("shap")
    assert make_method("occlusion").options.window == 9  # the paper's defaults (appendix B.4)
    assert (make_method("lime").options.segments, make_method("lime").options.compactness) == (100, 1.0)


# --------------------------------------------------------------------------- the attributions file and the flip task


def _key(checkpoint: str, sequence: str, method: str, steps: tuple[int, ...] = (0, 3)) -> AttributionKey:
    return AttributionKey("net", checkpoint, sequence, method, json.dumps({}), "cat", 0, steps, 0)


def _outputs(path: Path, curves: dict[str, np.ndarray]) -> None:
    """Outputs of model 'net' with 2 checkpoints; curves: sequence -> [2, N] probability of 'cat'."""
    blocks = []
    for seq, p in curves.items():
        out = np.stack([p, 1 - p], axis=-1).astype(np.float32)
        blocks.append(E.OutputsBlock(model="net", sequence=seq, outputs=out, done=np.ones(2, bool),
                                     checkpoints=["e1", "e2"], classes=["cat", "dog"],
                                     values=np.arange(p.shape[1], dtype=np.float64)))
    E.write_outputs(path, blocks)


def test_flip_task_units_equal_epg_core_and_the_msd(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    curves = {"s1": np.array([[0.9, 0.8, 0.7, 0.6], [0.9, 0.6, 0.4, 0.2]]),
              "s2": np.array([[0.2, 0.3, 0.6, 0.8], [0.3, 0.3, 0.35, 0.3]])}
    _outputs(tmp_path / "out.h5", curves)
    items = []
    for seq in curves:
        for ck in ("e1", "e2"):
            for method in ("saliency", "occlusion"):
                items.append(Attribution(_key(ck, seq, method), rng.normal(size=(2, 4, 5)).astype(np.float32),
                                         np.array([0.0, 3.0])))
    write_attributions(tmp_path / "attr.h5", items)
    table = flip_task_table(tmp_path / "out.h5", tmp_path / "attr.h5", n_bootstrap=50)
    assert table.target == "cat" and len(table.units) == 4
    for unit in table.units:
        m = ["e1", "e2"].index(unit.checkpoint)
        p = curves[unit.sequence][m]
        assert unit.epg == pytest.approx(float(np.mean(np.abs(np.gradient(p)))), rel=1e-6)
        assert unit.label == bool(np.any(np.diff((p < 0.5).astype(int)) != 0))
        for item in items:
            k = item.key
            if (k.checkpoint, k.sequence) == (unit.checkpoint, unit.sequence):
                assert unit.baselines[k.method] == pytest.approx(float(np.mean((item.maps[1] - item.maps[0]) ** 2)))
    labels = [u.label for u in table.units]
    assert table.results["epg"] == E.flip_task([u.epg for u in table.units], labels, n_bootstrap=50)
    assert list(table.results) == ["epg", "saliency", "occlusion"]
    # --predict-from: EPG of the first k steps, labels from step k-1 on, baselines from a stored step < k
    with pytest.raises(E.DataError, match="no stored step after the original"):
        flip_task_table(tmp_path / "out.h5", tmp_path / "attr.h5", predict_from=0.5)
    write_attributions(tmp_path / "attr2.h5", [Attribution(_key(i.key.checkpoint, i.key.sequence, i.key.method,
                                                                   (0, 1, 3)),
                                                           np.concatenate([i.maps[:1], i.maps]), np.arange(3.0))
                                               for i in items])
    half = flip_task_table(tmp_path / "out.h5", tmp_path / "attr2.h5", predict_from=0.5, n_bootstrap=0)
    for unit in half.units:
        p = curves[unit.sequence][["e1", "e2"].index(unit.checkpoint)]
        assert unit.epg == pytest.approx(float(np.mean(np.abs(np.gradient(p[:2])))), rel=1e-6)
        assert unit.label == bool(np.any(np.diff((p[1:] < 0.5).astype(int)) != 0))


def test_attributions_file_refuses_foreign_files_and_other_targets(tmp_path: Path) -> None:
    foreign = tmp_path / "mine.h5"
    with h5py.File(foreign, "w") as fh:
        fh.attrs["format"] = "something-else"
    before = foreign.read_bytes()
    item = Attribution(_key("e1", "s1", "saliency"), np.zeros((2, 3, 3), np.float32), np.zeros(2))
    with pytest.raises(E.UsageError, match="refusing to replace"):
        write_attributions(foreign, [item])
    assert foreign.read_bytes() == before
    assert [k.method for k in list_attributions(write_attributions(foreign, [item], force=True))] == ["saliency"]
    good = write_attributions(tmp_path / "a.h5", [item])
    assert [k.method for k in list_attributions(good)] == ["saliency"]
    assert read_attributions(good)[0].maps.shape == (2, 3, 3)
    _outputs(tmp_path / "out.h5", {"s1": np.array([[0.9, 0.8, 0.7, 0.6], [0.9, 0.6, 0.4, 0.2]])})
    with pytest.raises(E.UsageError, match="no attributions explain class 'dog'"):
        flip_task_table(tmp_path / "out.h5", good, target="dog")


# --------------------------------------------------------------------------- the CLI end to end on the paper's models


@pytest.mark.slow
def test_cli_chain_on_the_reference_convmixers(tmp_path: Path, reference_dir: Path) -> None:
    """darken-background on the paper's photos, the three cats-vs-dogs ConvMixers: both labels occur."""
    images = sorted((reference_dir / "example_images" / "cvd").glob("*.jpg"))
    ckpts = str(reference_dir / "checkpoints" / "cats-vs-dogs" / "*.pth")
    iv, out, attr = tmp_path / "iv.h5", tmp_path / "out.h5", tmp_path / "attr.h5"
    assert run_cli("intervene", "synthetic", "darken-background", *images, "--size", "128", "--n-steps", "8",
                   "-o", iv, "-q").exit_code == 0
    res = run_cli("sweep", ckpts, iv, "-o", out, "--classes", "cat,dog", "-q")
    assert res.exit_code == 0, res.output
    res = run_cli("attribute", iv, ckpts, "--class", "cat", "--classes", "cat,dog", "--methods",
                  "saliency,deeplift,occlusion", "-O", "occlusion.window=32", "-O", "occlusion.stride=32",
                  "-o", attr, "-q")
    assert res.exit_code == 0, res.output
    keys = list_attributions(attr)
    assert len(keys) == 3 * 4 * 3 and {k.steps for k in keys} == {(0, 7)}
    assert {json.loads(k.options).get("window") for k in keys if k.method == "occlusion"} == {32}
    again = run_cli("attribute", iv, ckpts, "--class", "cat", "--classes", "cat,dog", "--methods",
                    "saliency,deeplift,occlusion", "-O", "occlusion.window=32", "-O", "occlusion.stride=32",
                    "-o", attr, "-q")
    assert again.exit_code == 0 and "36 " in again.output.splitlines()[-1]  # all 36 skipped: resumed
    csv_path = tmp_path / "flip.csv"
    res = run_cli("flip-task", out, attr, "--class", "cat", "--csv", csv_path, "--bootstrap", "200")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["score"] for r in rows] == ["epg", "saliency", "deeplift", "occlusion"]
    n, positives = int(rows[0]["n"]), int(rows[0]["positives"])
    assert n == 12 and 0 < positives < n, rows  # both labels present
    # the labels are the sweep's argmax changes, independently of the flip-task code
    flipped = sum(int(np.any(np.diff(np.argmax(b.outputs[m], axis=-1)) != 0))
                  for b in E.read_outputs(out) for m in range(3))
    assert positives == flipped
    report = tmp_path / "report"
    res = run_cli("report", out, "-i", iv, "--attributions", attr, "--class", "cat", "-k", "200", "-o", report,
                  "-q")
    assert res.exit_code == 0, res.output
    page = (report / "index.html").read_text()
    assert "Local explanations" in page and "AUROC" in page
    assert list(report.glob("baselines_roc_*.png")) and list(report.glob("baselines_maps_*.png"))
    # bad input: one line
    one_line_error(run_cli("flip-task", out, iv, catch=True), 1, "not an epg-attributions file")
    one_line_error(run_cli("attribute", iv, ckpts, "--class", "bird", "--classes", "cat,dog", "-o",
                           tmp_path / "x.h5", catch=True), 2, "bird")
    one_line_error(run_cli("attribute", iv, ckpts, "--class", "cat", "--methods", "saliency", "-O", "lime.samples=3",
                           "-o", tmp_path / "x.h5", catch=True), 2, "lime")


def test_attribute_resumes_after_an_interrupt_and_refuses_other_options(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny ConvMixer checkpoints (a training run): finished checkpoints survive a Ctrl-C; a rerun computes the rest."""
    from epg_bridges.baselines import _attribute, attribute
    from epg_bridges.models import RunOptions
    from epg_bridges.testing import small_interventions, train_run

    paths = train_run(tmp_path / "run", steps=3)
    iv = small_interventions(tmp_path / "iv.h5")
    out = tmp_path / "attr.h5"
    opts = RunOptions(preprocessing_options={"size": (32, 32)}, classes=["a", "b", "c"])
    methods = ["saliency", "occlusion"]
    real = _attribute.load_weights
    calls = {"n": 0}

    def interrupted(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # while loading the third checkpoint
            raise KeyboardInterrupt
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_attribute, "load_weights", interrupted)
    with pytest.raises(KeyboardInterrupt):
        attribute([iv], paths, out, target="b", methods=methods, options=opts, output="probabilities")
    monkeypatch.setattr(_attribute, "load_weights", real)
    stored = {k.checkpoint for k in list_attributions(out)}
    assert stored == {p.stem for p in paths[:2]}
    again = attribute([iv], paths, out, target="b", methods=methods, options=opts, output="probabilities")
    assert (again.computed, again.skipped) == (2 * 2, 2 * 2 * 2)
    assert {k.checkpoint for k in list_attributions(out)} == {p.stem for p in paths}
    with pytest.raises(E.UsageError, match="other options"):
        attribute([iv], paths, out, target="b", methods=["occlusion"], options=opts, output="probabilities",
                  method_options={"occlusion": {"window": "5"}})
    with pytest.raises(E.UsageError, match="another output"):
        attribute([iv], paths, out, target="b", methods=methods, options=opts)
