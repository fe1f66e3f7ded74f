"""The merges that learn from data (issue 29): Fisher-weighted interpolation and Fisher merging, RegMean on the
input Grams, AdaMerging's entropy, model soups; the statistics they read, each against an independent formula."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from paint_core.cli import main
from paint_core.core.interpolation import fisher_interpolate, interpolate
from paint_core.core.methods import merge, regmean_layer
from paint_core.core.task_vectors import TaskVector
from paint_core.data.tasks import get_task
from paint_core.engine.adamerging import entropy, learn_merge_coefficients
from paint_core.engine.evaluation import logits, materialize, zero_shot_head
from paint_core.engine.statistics import fisher_diagonal, input_grams
from paint_core.studies.merge_data import RunsData
from paint_core.models.run import load_run, run_task_vector
from paint_core.studies.soup import greedy_soup, soup_state

ROOT = Path(__file__).resolve().parent.parent
RUNS = [ROOT / "cached_results" / "micro-rn-s" / t for t in ("digits", "counting")]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PAINT_CACHE_DIR", str(tmp_path / "cache"))


class Given:
    """MergeData with statistics given by the test."""

    def __init__(self, fishers=None, grams=None):
        self._fishers, self._grams = fishers, grams

    def fishers(self, n):
        return self._fishers

    def grams(self, n):
        return self._grams


def test_fisher_interpolation_is_the_formula_and_plain_interpolation_for_equal_fishers():
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g), "step": torch.tensor(3)}
    b = {k: (v + torch.randn(v.shape, generator=g) if v.is_floating_point() else v) for k, v in a.items()}
    f0 = {"w": torch.rand(3, 4, generator=g), "b": torch.rand(4, generator=g)}
    f1 = {"w": torch.rand(3, 4, generator=g) * 10, "b": torch.zeros(4)}  # a zero Fisher falls to the floor
    for alpha in (0.0, 0.3, 1.0):
        got = fisher_interpolate(a, b, f0, f1, alpha, floor=1e-3)
        for k in ("w", "b"):
            c0, c1 = (1 - alpha) * f0[k].clamp(min=1e-3), alpha * f1[k].clamp(min=1e-3)
            torch.testing.assert_close(got[k], (c0 * a[k] + c1 * b[k]) / (c0 + c1))
        assert torch.equal(got["step"], a["step"])
    equal = fisher_interpolate(a, b, f0, f0, 0.3)
    plain = interpolate(a, b, 0.3)
    for k in ("w", "b"):
        torch.testing.assert_close(equal[k], plain[k])
    assert torch.equal(fisher_interpolate(a, b, f0, f1, 0.0)["w"], a["w"])
    assert torch.equal(fisher_interpolate(a, b, f0, f1, 1.0)["w"], b["w"])


def test_fisher_and_regmean_merges_are_their_formulas_and_the_mean_for_equal_statistics():
    g = torch.Generator().manual_seed(1)
    taus = [TaskVector(vector={"lin.weight": torch.randn(3, 5, generator=g), "lin.bias": torch.randn(3, generator=g)})
            for _ in range(3)]
    fishers = [{"lin.weight": torch.rand(3, 5, generator=g)} for _ in range(3)]  # none for the bias: the mean
    got = merge(taus, "fisher", Given(fishers=fishers), floor=1e-6).vector
    w = [f["lin.weight"] for f in fishers]
    torch.testing.assert_close(got["lin.weight"], sum(wi * t.vector["lin.weight"] for wi, t in zip(w, taus)) / sum(w))
    torch.testing.assert_close(got["lin.bias"], sum(t.vector["lin.bias"] for t in taus) / 3)
    same = merge(taus, "fisher", Given(fishers=[fishers[0]] * 3)).vector
    torch.testing.assert_close(same["lin.weight"], sum(t.vector["lin.weight"] for t in taus) / 3)
    xs = [torch.randn(20, 5, generator=g) for _ in range(3)]
    grams = [{"lin.weight": x.T @ x / 20} for x in xs]
    got = merge(taus, "regmean", Given(grams=grams), offdiag=1.0).vector
    ref = regmean_layer([t.vector["lin.weight"] for t in taus], [gr["lin.weight"] for gr in grams])
    torch.testing.assert_close(got["lin.weight"], ref)
    # RegMean's point: the merged map's outputs are the least-squares fit to every model's own outputs
    stacked_x, stacked_y = torch.cat(xs), torch.cat([x @ t.vector["lin.weight"].T for x, t in zip(xs, taus)])
    torch.testing.assert_close(got["lin.weight"].T, torch.linalg.lstsq(stacked_x, stacked_y).solution,
                               rtol=1e-4, atol=1e-4)
    same = merge(taus, "regmean", Given(grams=[grams[0]] * 3)).vector
    torch.testing.assert_close(same["lin.weight"], sum(t.vector["lin.weight"] for t in taus) / 3)
    with pytest.raises(ValueError, match="regmean learns from data"):
        merge(taus, "regmean")


def _micro():
    run = load_run(RUNS[0])
    task = get_task("digits")
    images = materialize(task.split("train", run.preprocess), 6).tensors[0]
    head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
    run.model.load_state_dict(run.theta_ft)
    return run, images, head


@pytest.mark.slow
def test_the_fisher_is_the_mean_squared_gradient_of_a_sampled_label():
    run, images, head = _micro()
    got = fisher_diagonal(run.model, head, images, seed=5, batch_size=4)
    generator = torch.Generator().manual_seed(5)  # the same draws, one image at a time, outside the batched pass
    params = dict(run.model.visual.named_parameters())
    ref = {k: torch.zeros_like(p) for k, p in params.items()}
    run.model.eval()
    for x in images:
        logp = F.log_softmax(logits(run.model, head, x[None]), dim=-1)[0]
        y = torch.multinomial(logp.detach().exp(), 1, generator=generator).item()
        run.model.zero_grad()
        logp[y].backward()
        for k, p in params.items():
            ref[k] += p.grad ** 2
    for k in params:
        torch.testing.assert_close(got[f"visual.{k}"], ref[k] / len(images), rtol=1e-4, atol=1e-9)
    assert sum(float(v.sum()) for v in got.values()) > 0


@pytest.mark.slow
def test_the_grams_are_the_inputs_of_each_linear_map():
    """The attention pool's projections are called functionally: its token Gram, and the Gram of the attention's
    output before c_proj, checked against the pool's own output through c_proj."""
    run, images, head = _micro()
    grams = input_grams(run.model, images, batch_size=4)
    pool = run.model.visual.attnpool
    assert set(grams) == {f"visual.attnpool.{p}_proj.weight" for p in "qkv"} | {"visual.attnpool.c_proj.weight"}
    seen = {}
    hook = pool.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    with torch.no_grad():
        run.model.eval()
        run.model.encode_image(images)
    hook.remove()
    x = seen["x"].flatten(2).permute(2, 0, 1)
    tokens = torch.cat([x.mean(0, keepdim=True), x]) + pool.positional_embedding[:, None, :]
    flat = tokens.reshape(-1, tokens.shape[-1]).double()
    torch.testing.assert_close(grams["visual.attnpool.k_proj.weight"].double(), flat.T @ flat / len(images),
                               rtol=1e-4, atol=1e-4)
    first = tokens[0].double()
    torch.testing.assert_close(grams["visual.attnpool.q_proj.weight"].double(), first.T @ first / len(images),
                               rtol=1e-4, atol=1e-4)
    w, b = pool.c_proj.weight.double(), pool.c_proj.bias.double()  # out - b = context W^T, so W G W^T is
    projected = seen["out"].double() - b                             # the Gram of the pool's outputs less b
    torch.testing.assert_close(w @ grams["visual.attnpool.c_proj.weight"].double() @ w.T,
                               projected.T @ projected / len(images), rtol=1e-4, atol=1e-4)


def test_a_vit_tower_has_grams_for_its_attention_and_mlp_maps():
    import open_clip

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()  # open_clip's own ViT tower, tiny: 2 layers of width 32 at 32 px
            self.visual = open_clip.model._build_vision_tower(
                16, open_clip.model.CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=16, image_size=32))

        def encode_image(self, x):
            return self.visual(x)

    torch.manual_seed(0)
    model = Tower()
    images = torch.randn(3, 3, 32, 32)
    grams = input_grams(model, images)
    block = model.visual.transformer.resblocks[0]
    names = {k.removeprefix("visual.transformer.resblocks.0.") for k in grams if ".resblocks.0." in k}
    assert names == {"attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"}
    seen = {}
    hooks = [block.mlp.c_fc.register_forward_hook(lambda m, a, o: seen.update(fc=a[0])),
             block.attn.register_forward_hook(lambda m, a, o: seen.update(attn=o[0]))]
    with torch.no_grad():
        model.eval()
        model.encode_image(images)
    for h in hooks:
        h.remove()
    fc = seen["fc"].reshape(-1, 32).double()
    torch.testing.assert_close(grams["visual.transformer.resblocks.0.mlp.c_fc.weight"].double(), fc.T @ fc / 3,
                               rtol=1e-4, atol=1e-5)
    w, b = block.attn.out_proj.weight.double(), block.attn.out_proj.bias.double()
    context = torch.linalg.solve(w, (seen["attn"].reshape(-1, 32).double() - b).T).T
    torch.testing.assert_close(grams["visual.transformer.resblocks.0.attn.out_proj.weight"].double(),
                               context.T @ context / 3, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_adamerging_lowers_the_entropy_it_minimises():
    runs = [load_run(p) for p in RUNS]
    base = runs[0]
    vectors = [run_task_vector(r) for r in runs]
    tasks = []
    for r in runs:
        task = get_task(r.meta["task"])
        tasks.append((zero_shot_head(base.model, base.tokenizer, task.classnames, task.templates),
                      materialize(task.split("test", base.preprocess), 32).tensors[0]))

    def total_entropy(coefficients: list[dict[str, float]]) -> float:
        from paint_core.core.blocks import block_of_keys
        owner = block_of_keys(base.theta_zs)
        state = dict(base.theta_zs)
        for v, c in zip(vectors, coefficients):
            for k, d in v.vector.items():
                state[k] = state[k] + c.get(owner[k], c.get("all", 0.0)) * d
        base.model.load_state_dict(state)
        base.model.eval()
        with torch.no_grad():
            return sum(float(entropy(logits(base.model, head, x))) for head, x in tasks)

    from paint_core.configs import SearchConfig
    for blocks in (None, sorted({b for b in __import__("paint_core.core.blocks", fromlist=["x"]).block_of_keys(
            base.theta_zs).values() if b in {"layer3", "layer4", "attnpool"}})):
        learned = learn_merge_coefficients(base.model, base.theta_zs, [v.vector for v in vectors], tasks, blocks, 0.3,
                                           SearchConfig(budget=15, search_lr=0.05, search_batch=32))
        start = [{b: 0.3 for b in c} for c in learned]
        assert total_entropy(learned) < total_entropy(start) - 1e-3
        assert all(0 <= v <= 1 for c in learned for v in c.values())


def test_greedy_soup_never_keeps_an_ingredient_that_lowers_val_accuracy():
    own = [0.7, 0.9, 0.8, 0.6]
    soups = {(1,): 0.9, (1, 2): 0.92, (1, 2, 0): 0.91, (1, 2, 3): 0.92}

    def soup_accuracy(indices):
        return soups[tuple(indices)]

    kept, history = greedy_soup(own, soup_accuracy)
    assert kept == [1, 2, 3]  # 0 lowered val (0.91 < 0.92); 3 left it equal, kept (does not drop)
    assert [h["ingredient"] for h in history] == [1, 2, 0, 3]
    best = history[0]["soup_val"]
    for h in history[1:]:
        assert h["kept"] == (h["soup_val"] >= best)
        best = max(best, h["soup_val"]) if h["kept"] else best


@pytest.mark.slow
def test_soup_study_and_soup_run_on_ingredients_of_one_task(tmp_path, capsys):
    """Four ingredients of the digits task made from the shipped run (zero-shot + c tau): the study's greedy history
    obeys the rule, the uniform soup is the mean, and `soup --out` writes a run whose encoder is the greedy soup."""
    from safetensors.torch import save_file
    run = load_run(RUNS[0])
    zs = tmp_path / "zs.safetensors"
    save_file({k: v.contiguous() for k, v in run.theta_zs.items()}, zs)
    paths = []
    for i, c in enumerate((1.0, 0.6, 0.0, 1.4)):
        ft = tmp_path / f"ft{i}.safetensors"
        save_file({k: v.contiguous() for k, v in interpolate(run.theta_zs, run.theta_ft, c, True).items()}, ft)
        assert main(["import-run", "--zeroshot", str(zs), "--finetuned", str(ft), "--model", "micro-rn-s",
                     "--task", "digits", "--out", str(tmp_path / f"r{i}")]) == 0
        paths.append(str(tmp_path / f"r{i}"))
    study = tmp_path / "soup.json"
    assert main(["soup", "--runs", ",".join(paths), "--study", str(study), "--supported", "shapes",
                 "--max-eval", "60", "--out", str(tmp_path / "soup")]) == 0
    doc = json.loads(study.read_text())["results"]
    val = [row["digits/val"] for row in doc["ingredients"]]
    best = max(val)
    assert doc["best_single"]["ingredient"] == val.index(best) and doc["greedy"]["history"][0]["soup_val"] == best
    for h in doc["greedy"]["history"][1:]:
        assert h["kept"] == (h["soup_val"] >= best)
        best = h["soup_val"] if h["kept"] else best
    assert doc["greedy"]["digits/val"] >= max(val) and doc["uniform"]["kept"] == [0, 1, 2, 3]
    runs = [load_run(p) for p in paths]
    soup = load_run(tmp_path / "soup")
    expected = soup_state(runs, doc["greedy"]["kept"])
    assert all(torch.allclose(soup.theta_ft[k].float(), expected[k].float(), atol=1e-6) for k in expected
               if k.startswith("visual."))
    meta = json.loads((tmp_path / "soup" / "run.json").read_text())
    assert meta["provenance"]["soup"]["ingredients"] == [paths[i] for i in doc["greedy"]["kept"]]
    assert main(["soup", "--runs", ",".join(paths)]) == 1
    assert "give --out" in capsys.readouterr().err


@pytest.mark.slow
def test_statistics_are_cached_per_run_and_n(tmp_path, monkeypatch):
    runs = [load_run(p) for p in RUNS]
    data = RunsData(runs)
    first = data.grams(8)
    files = sorted((tmp_path / "cache" / "statistics").iterdir())
    assert len(files) == 2
    calls = []
    import paint_core.studies.merge_data as md
    monkeypatch.setattr(md, "input_grams", lambda *a, **k: calls.append(1) or {})
    again = RunsData(runs).grams(8)
    assert not calls and all(torch.equal(a[k], b[k]) for a, b in zip(first, again) for k in a)
    RunsData(runs).grams(9)  # another n: computed anew
    assert len(calls) == 2


@pytest.mark.slow
def test_wiseft_with_fisher_adds_the_fisher_weighted_curve(tmp_path):
    out = tmp_path / "w.json"
    assert main(["wiseft", "--run", str(RUNS[0]), "--shift", "digits_rotated", "--fisher", "--fisher-n", "16",
                 "--max-eval", "40", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["inputs"]["fisher"] == {"n": 16, "floor": 1e-6}
    rows = doc["results"]["rows"]
    by = {(r["ensemble"], r["alpha"], r["task"], r["split"]): r["accuracy"] for r in rows}
    assert {r["ensemble"] for r in rows} == {"weight", "output", "fisher"}
    for alpha in (0.0, 1.0):  # the endpoints are the endpoints, whatever the Fishers
        for task in ("digits", "digits_rotated"):
            assert by[("fisher", alpha, task, "test")] == by[("weight", alpha, task, "test")]
    assert "fisher" in doc["results"]["summary_test"]["digits_rotated"]
