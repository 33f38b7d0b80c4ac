"""CLIP zero-shot (issue 13): export, prompt embeddings, per-class mean-of-cosines outputs, prompt outputs stored.

A tiny random CLIPModel and an offline byte-level tokenizer; the oracle is transformers' torch model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import epg_core as E
from epg_bridges.models import export_clip, load_clip_text, predict_clip, prompt_block, read_prompts, read_spec
from epg_bridges.testing import tiny_tokenizer

transformers = pytest.importorskip("transformers")

PROMPTS = """
[classes]
cat = ["a photo of a cat", "a cat", "a blurry photo of a cat"]
dog = ["a photo of a dog", "a dog"]
"""


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip") / "tiny-clip"
    tokenizer = tiny_tokenizer()
    text = {"vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 77, "projection_dim": 8,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8, "projection_dim": 8}
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder)
    return folder


def turntable(path: Path) -> Path:
    """Eight frames of one object turned by 45 degrees each (the paper's Sec. 4.4 setting)."""
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    angles = np.arange(0, 360, 45, dtype=np.float64)
    frames = np.stack([np.asarray(base.rotate(float(a), resample=Image.Resampling.BILINEAR)) for a in angles])
    seq = E.InterventionSequence(frames, angles, {"source": "frames", "property": "angle", "unit": "deg",
                                                  "includes_original": True})
    return E.write_interventions(path, {"turntable": seq})


def torch_cosines(folder: Path, x: np.ndarray, prompts: list[str]) -> np.ndarray:
    """Every image's cosine with every prompt, computed by transformers' CLIPModel (the oracle)."""
    model = transformers.CLIPModel.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        image = model.visual_projection(model.vision_model(pixel_values=torch.from_numpy(x)).pooler_output)
        tokens = tokenizer(prompts, padding=True, return_tensors="pt")
        text = model.text_projection(model.text_model(**tokens).pooler_output)
        image = image / image.norm(dim=-1, keepdim=True)
        text = text / text.norm(dim=-1, keepdim=True)
        return (image @ text.T).numpy()


@pytest.mark.slow
def test_clip_outputs_are_means_of_prompt_cosines(clip_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "prompts.toml").write_text(PROMPTS)
    result = export_clip(clip_folder, tmp_path / "prompts.toml", tmp_path / "clip.onnx")
    assert result.max_abs_diff < 1e-4 and result.text_path.name == "clip.onnx.text.npz"
    text = load_clip_text(tmp_path / "clip.onnx")
    assert text is not None and text.classes == ["cat", "dog"] and len(text.prompts) == 5
    assert text.logit_scale == pytest.approx(float(np.exp(transformers.CLIPConfig().logit_scale_init_value)))

    inputs = turntable(tmp_path / "turntable.h5")
    predict_clip(tmp_path / "clip.onnx", [inputs], tmp_path / "out.h5", model_name="clip")
    block = E.read_outputs(tmp_path / "out.h5", "clip", "turntable")[0]
    assert block.output_kind == "cosine" and block.classes == ["cat", "dog"]
    assert block.prompt_outputs is not None and block.prompt_outputs.shape == (1, 8, 5)
    assert block.prompt_classes == ["cat"] * 3 + ["dog"] * 2 and block.prompts == text.prompts
    assert block.logit_scale == pytest.approx(text.logit_scale)

    frames = E.read_interventions(inputs)["turntable"].images
    spec = read_spec(tmp_path / "clip.onnx")
    assert spec is not None and spec.preprocessing.resize == "shortest" and spec.classes == ["cat", "dog"]
    x = spec.preprocessing.apply(frames)
    cos = torch_cosines(clip_folder, x, text.prompts)
    np.testing.assert_allclose(block.prompt_outputs[0], cos, atol=1e-5, rtol=0)
    expected = np.stack([cos[:, :3].mean(axis=1), cos[:, 3:].mean(axis=1)], axis=1)
    np.testing.assert_allclose(block.outputs[0], expected, atol=1e-5, rtol=0)

    processor = transformers.CLIPImageProcessor.from_pretrained(clip_folder)
    hf_x = processor(images=list(frames), return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(x, hf_x, atol=1e-4)  # the folder's preprocessing, reproduced


def test_turntable_scores_per_class_and_per_prompt(clip_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "prompts.toml").write_text(PROMPTS)
    export_clip(clip_folder, tmp_path / "prompts.toml", tmp_path / "clip.onnx")
    [block] = predict_clip(tmp_path / "clip.onnx", [turntable(tmp_path / "t.h5")], tmp_path / "out.h5")
    for name in ("cat", "dog"):
        [row] = [r for r in E.score_outputs(tmp_path / "out.h5", E.ScoreOptions(n_permutations=200, target=name))
                 if r["aggregate"] == "none"]
        assert row["output"] == name and row["n_steps"] == 8
        curve = block.outputs[0, :, block.classes.index(name)]
        assert row["epg"] == pytest.approx(np.abs(np.gradient(curve)).mean(), rel=1e-4)  # unit spacing (steps)
    E.write_outputs(tmp_path / "prompts.h5", [prompt_block(block)])
    assert block.prompt_outputs is not None and prompt_block(block).classes[3] == "dog: a photo of a dog"
    [row] = [r for r in E.score_outputs(tmp_path / "prompts.h5", E.ScoreOptions(n_permutations=200,
                                                                                target="dog: a dog"))
             if r["aggregate"] == "none"]
    assert row["epg"] == pytest.approx(np.abs(np.gradient(block.prompt_outputs[0, :, 4])).mean(), rel=1e-4)
    with pytest.raises(E.UsageError, match="holds CLIP prompt outputs"):
        E.set_checkpoint_outputs(tmp_path / "out.h5", block.model, 0, {"turntable": block.outputs[0]})


def test_broken_tokenizer_and_bad_prompts_are_refused(clip_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "prompts.toml").write_text(PROMPTS)
    broken = tmp_path / "broken"
    shutil.copytree(clip_folder, broken)
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (broken / name).unlink(missing_ok=True)
    with pytest.raises(E.DataError) as err:
        export_clip(broken, tmp_path / "prompts.toml", tmp_path / "clip.onnx")
    assert "tokenizer" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "clip.onnx").exists()
    (tmp_path / "bad.toml").write_text("[classes]\ncat = []\n")
    with pytest.raises(E.UsageError, match="class 'cat' needs a non-empty list"):
        read_prompts(tmp_path / "bad.toml")


@pytest.mark.slow
def test_cli_export_clip_then_predict(clip_folder: Path, tmp_path: Path) -> None:
    """`epg export-clip` then `epg predict clip.onnx`: per-class outputs are the means of the per-prompt cosines
    computed by transformers' torch model; colliding outputs and CLIP-irrelevant options are refused."""
    from helpers import one_line_error, run_cli

    prompts = tmp_path / "prompts.toml"
    prompts.write_text(PROMPTS)
    onnx_path = tmp_path / "clip.onnx"
    result = run_cli("export-clip", clip_folder, "--prompts", prompts, "-o", onnx_path, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:3] == [str(onnx_path), f"{onnx_path}.json", f"{onnx_path}.text.npz"]
    assert "logit scale" in result.stdout and result.stderr == ""  # --quiet: no progress

    inputs = turntable(tmp_path / "turntable.h5")
    out = tmp_path / "out.h5"
    result = run_cli("predict", onnx_path, inputs, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    [block] = E.read_outputs(out)
    table = read_prompts(prompts)
    texts = [p for c in table for p in table[c]]
    assert (block.model, block.output_kind, block.classes, block.prompts) == ("clip", "cosine", ["cat", "dog"], texts)
    spec = read_spec(onnx_path)
    assert spec is not None
    frames = E.read_interventions(inputs)["turntable"].images
    cos = torch_cosines(clip_folder, spec.preprocessing.apply(frames), texts)
    assert block.prompt_outputs is not None
    np.testing.assert_allclose(block.prompt_outputs[0], cos, atol=1e-5, rtol=0)
    expected = np.stack([cos[:, :3].mean(axis=1), cos[:, 3:].mean(axis=1)], axis=1)
    np.testing.assert_allclose(block.outputs[0], expected, atol=1e-5, rtol=0)

    before = prompts.read_bytes()
    one_line_error(run_cli("export-clip", clip_folder, "--prompts", prompts, "-o", prompts), 2, "overwrite")
    one_line_error(run_cli("export-clip", clip_folder, "--prompts", prompts, "-o", clip_folder / "config.json"), 2,
                   "config.json", "overwrite")
    assert prompts.read_bytes() == before
    one_line_error(run_cli("predict", onnx_path, inputs, "-o", out, "--classes", "a,b", "-q"), 2, "prompts file")
    one_line_error(run_cli("export-clip", clip_folder, "--prompts", tmp_path / "missing.toml", "-o",
                           tmp_path / "x.onnx"), 2, "missing.toml", "not found")


@pytest.mark.slow
def test_predict_clip_export_with_kind_cosine_finds_its_prompts(clip_folder: Path, tmp_path: Path) -> None:
    """Issue 17: `epg predict clip.onnx --kind cosine` uses the prompt embeddings beside the export (it was refused
    with "needs text embeddings")."""
    from helpers import run_cli

    prompts = tmp_path / "prompts.toml"
    prompts.write_text(PROMPTS)
    onnx_path = tmp_path / "clip.onnx"
    assert run_cli("export-clip", clip_folder, "--prompts", prompts, "-o", onnx_path, "-q").exit_code == 0
    inputs = turntable(tmp_path / "turntable.h5")
    plain, cosine = tmp_path / "a.h5", tmp_path / "b.h5"
    assert run_cli("predict", onnx_path, inputs, "-o", plain, "-q").exit_code == 0
    result = run_cli("predict", onnx_path, inputs, "--kind", "cosine", "-o", cosine, "-q")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(E.read_outputs(plain)[0].outputs, E.read_outputs(cosine)[0].outputs)


@pytest.mark.slow
def test_text_embeddings_with_prompts_give_the_papers_mean_of_cosines(clip_folder: Path, tmp_path: Path) -> None:
    """Issue 17: `--text-embeddings [C, K, D]` gives the mean over prompts of the cosine, as export-clip stores it;
    the cosine with the mean embedding only with --prompt-average embedding (and it differs)."""
    import json

    from helpers import run_cli

    prompts = tmp_path / "prompts.toml"
    prompts.write_text('[classes]\ncat = ["a photo of a cat", "a cat"]\ndog = ["a photo of a dog", "a dog"]\n')
    onnx_path = tmp_path / "clip.onnx"
    assert run_cli("export-clip", clip_folder, "--prompts", prompts, "-o", onnx_path, "-q").exit_code == 0
    text = load_clip_text(onnx_path)
    assert text is not None
    ckd = text.embeddings.reshape(2, 2, -1)  # [C, K, D], prompts in class order
    np.save(tmp_path / "ckd.npy", ckd)
    plain = tmp_path / "plain.onnx"  # the same image tower as an ordinary export (no prompts beside it)
    shutil.copyfile(onnx_path, plain)
    spec = json.loads((tmp_path / "clip.onnx.json").read_text())
    del spec["info"]["clip"]
    (tmp_path / "plain.onnx.json").write_text(json.dumps(spec))
    inputs = turntable(tmp_path / "turntable.h5")
    outs = {}
    for name, extra in (("clip", []), ("mean-cos", []), ("mean-emb", ["--prompt-average", "embedding"])):
        model = onnx_path if name == "clip" else plain
        args = [] if name == "clip" else ["--kind", "cosine", "--text-embeddings", tmp_path / "ckd.npy", *extra]
        result = run_cli("predict", model, inputs, *args, "-o", tmp_path / f"{name}.h5", "-q")
        assert result.exit_code == 0, result.output
        outs[name] = E.read_outputs(tmp_path / f"{name}.h5")[0].outputs[0]
    np.testing.assert_allclose(outs["mean-cos"], outs["clip"], atol=1e-6, rtol=0)
    assert np.abs(outs["mean-emb"] - outs["clip"]).max() > 1e-4  # the other definition, only when asked
    cos_mean = np.asarray(outs["clip"])
    assert cos_mean.shape == outs["mean-emb"].shape
    # cos(x, mean_k e_k) = |mean|^-1 * mean_k cos(x, e_k): the two definitions differ by the norm of the mean
    norms = np.linalg.norm(ckd.mean(axis=1), axis=1)
    np.testing.assert_allclose(outs["mean-emb"], cos_mean / norms, atol=1e-5, rtol=0)
