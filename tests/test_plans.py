"""Per-block plans (issue 27): blocks partition every tower, a uniform plan is the scalar path bit for bit, a
per-block plan is a hand lerp per key, sweep rows and exports carry plans, and both searchers keep PAINT's rule."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import open_clip
import pandas as pd
import pytest
import torch

from paint_core.cli import main
from paint_core.configs import FinetuneConfig, SearchConfig
from paint_core.core.blocks import TEXT_BLOCK, image_blocks
from paint_core.core.interpolation import Interpolator, interpolate
from paint_core.core.plan import AlphaOutOfRange, Plan, early_blocks_frozen, read_plan
from paint_core.core.task_vectors import TaskVector
from paint_core.io.paths import CACHED_RESULTS_DIR
from paint_core.io.writes import WriteRefused
from paint_core.io.run_dir import read_sweep, sweep_csv
from paint_core.models.clip import load_model
from paint_core.studies.patch import SweepSpec, run_finetune, run_sweep
from paint_core.studies.search import model_blocks, search_run


def _states(model: torch.nn.Module, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    zs = {k: v.clone() for k, v in model.state_dict().items()}
    ft = {k: v + 0.05 * torch.randn(v.shape, generator=g) if v.is_floating_point() and k.startswith("visual.")
          else v.clone() for k, v in zs.items()}
    return zs, ft


# ------------------------------------------------------------------------------------------------ blocks
TOWERS = {  # name -> the blocks expected, in order (text last when the model has a text tower)
    "micro-rn-s": None, "micro-rn-l": ["stem", "layer1", "layer2", "layer3", "layer4", "attnpool", TEXT_BLOCK],
    "RN50": ["stem", "layer1", "layer2", "layer3", "layer4", "attnpool", TEXT_BLOCK],
    "tiny-vit": ["embeddings", "block0", "block1", "block2", "head", TEXT_BLOCK],
    "micro-vit": ["embeddings", "block0", "block1", "block2", "block3", "head"],
}


def _tower_keys(name: str) -> list[str]:
    if name == "tiny-vit":  # a tiny open_clip VisionTransformer config, random weights
        cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 8, "head_width": 16},
               "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
        return list(open_clip.model.CLIP(**cfg).state_dict())
    if name == "RN50":
        return list(open_clip.create_model("RN50").state_dict())
    return [b for blk in model_blocks(name) for b in blk.keys]


@pytest.mark.parametrize("name", list(TOWERS))
@pytest.mark.slow
def test_blocks_partition_every_key_of_each_tower_family(name):
    keys = _tower_keys(name)
    blocks = image_blocks(keys)
    flat = [k for b in blocks for k in b.keys]
    assert sorted(flat) == sorted(keys) and len(flat) == len(set(flat))  # every key in exactly one block
    names = [b.name for b in blocks]
    if TOWERS[name] is not None:
        assert names == TOWERS[name]
    for b in blocks:
        prefixed = [k.startswith("visual.") for k in b.keys]
        assert all(prefixed) or not any(prefixed) or b.name == TEXT_BLOCK
        if b.name == TEXT_BLOCK:
            assert not any(prefixed)


def test_unknown_towers_get_one_block_per_top_level_module():
    keys = ["visual.trunk.a.weight", "visual.trunk.b.weight", "visual.neck.weight", "logit_scale"]
    assert [(b.name, b.keys) for b in image_blocks(keys)] == [
        ("trunk", ("visual.trunk.a.weight", "visual.trunk.b.weight")), ("neck", ("visual.neck.weight",)),
        (TEXT_BLOCK, ("logit_scale",))]


def test_blocks_command_prints_json(capsys):
    assert main(["blocks", "--model", "micro-rn-l", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in out["blocks"]] == TOWERS["micro-rn-l"]
    assert "visual.layer3.0.conv1.weight" in out["blocks"][3]["keys"]


# ------------------------------------------------------------------------------------------------ the type
def test_plan_keys_json_and_rounding_are_one_rule(tmp_path):
    assert Plan.of(0.1 + 0.2).key == "0.3" and Plan.of(0.30000000001) == Plan.of(0.3)
    assert Plan.per_block({"a": 0.25, "b": 0.25}) == Plan.of(0.25)  # all equal: the uniform plan
    p = Plan.per_block({"stem": 0, "layer1": 0.125, "head": 1})
    assert p.key == "stem=0;layer1=0.125;head=1" and Plan.from_key(p.key) == p
    assert Plan.from_json(json.loads(json.dumps(p.to_json()))) == p
    f = tmp_path / "plan.json"
    f.write_text(json.dumps({"blocks": {"stem": 0.5, "layer1": 0.75}, "measured": {"val": 1}}))
    assert read_plan(f) == Plan.per_block({"stem": 0.5, "layer1": 0.75})
    with pytest.raises(AlphaOutOfRange, match="block 'layer1'"):
        Plan.per_block({"stem": 0.5, "layer1": 1.5}).check()
    with pytest.raises(ValueError, match="finite"):
        Plan.per_block({"stem": math.nan})
    f.write_text('{"blocks": {"stem": "x"}}')
    with pytest.raises(ValueError, match="map block names to numbers"):
        read_plan(f)


def test_a_uniform_plan_is_the_scalar_path_bit_for_bit():
    model, _, _ = load_model("micro-rn-s")
    zs, ft = _states(model)
    names = [b.name for b in image_blocks(zs)]
    equal = Plan.per_block({n: 0.37 for n in names})
    for a, b in [(interpolate(zs, ft, 0.37), interpolate(zs, ft, equal))]:
        assert all(torch.equal(a[k], b[k]) for k in a)
    ref = {k: torch.lerp(z, ft[k], 0.37) if z.is_floating_point() else z for k, z in zs.items()}
    it = Interpolator(copy.deepcopy(model), zs, ft)
    it.set_plan(equal)
    assert it.alpha == 0.37 and all(torch.equal(it.model.state_dict()[k], ref[k]) for k in ref)
    tv = TaskVector(zs, ft)
    assert all(torch.equal(x, y) for x, y in zip(tv.apply_to(zs, 0.37).values(), tv.apply_to(zs, equal).values()))


@pytest.mark.slow
def test_a_per_block_plan_is_a_hand_lerp_per_key():
    model, _, _ = load_model("micro-rn-l")
    zs, ft = _states(model)
    blocks = image_blocks(zs)
    plan = Plan.per_block({b.name: i / 7 for i, b in enumerate(blocks) if b.name != TEXT_BLOCK})
    hand = {}
    for b in blocks:
        for k in b.keys:
            z = zs[k]
            hand[k] = z if b.name == TEXT_BLOCK or not z.is_floating_point() else \
                z + plan.coefficient(b.name) * (ft[k] - z)  # lerp written out
    it = Interpolator(copy.deepcopy(model), zs, ft)
    it.set_plan(plan)
    live, pure = it.model.state_dict(), interpolate(zs, ft, plan)
    tv = TaskVector(zs, ft).apply_to(zs, plan)
    for k in zs:
        for got in (live[k], pure[k], tv[k]):
            torch.testing.assert_close(got, hand[k], rtol=3e-7, atol=1e-7)  # float32: lerp vs z + c(f - z)
    assert torch.equal(live["visual.layer2.0.conv1.weight"], pure["visual.layer2.0.conv1.weight"])
    assert it.alpha is None and it.plan == plan
    with pytest.raises(ValueError, match="no coefficient for .*layer4"):
        it.set_plan(Plan.per_block({"stem": 0.1, "layer1": 0.2, "layer2": 0.3, "layer3": 0.4, "attnpool": 0.5}))
    with pytest.raises(ValueError, match="'neck', which this model does not have"):
        it.set_plan(Plan.per_block({"neck": 0.1, "stem": 0.2}))


def test_interpolating_a_plan_is_as_fast_as_a_scalar_within_reason():
    """Not a timing test: the plan touches the same flat buffers (no copy of the model per move)."""
    model, _, _ = load_model("micro-rn-l")
    zs, ft = _states(model)
    it = Interpolator(model, zs, ft)
    before = [t.data_ptr() for t in model.parameters()]
    it.set_plan(Plan.per_block({b.name: 0.5 + 0.01 * i for i, b in enumerate(image_blocks(zs))}))
    assert [t.data_ptr() for t in model.parameters()] == before


# ------------------------------------------------------------------------------------------------ tables
def test_cached_sweeps_keep_their_bytes_and_gain_plan_keys():
    for f in sorted(CACHED_RESULTS_DIR.glob("micro-rn-l/*/sweep.csv")):
        table = read_sweep(f.parent, per_block=True)
        uniform = table[table["alpha"].notna()]
        assert list(uniform["plan"]) == [Plan.of(a).key for a in uniform["alpha"]]
        assert sweep_csv(table) == f.read_bytes()  # read and written again: every number stays what it is


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plans") / "run"
    run_finetune(out, "micro-rn-s", None, "digits", FinetuneConfig(steps=40, batch_size=32, warmup=4),
                 sweep_spec=SweepSpec(("shapes",), (0.0, 0.5, 1.0), ("val", "test"), max_eval=48))
    return out


@pytest.mark.slow
def test_sweep_rows_carry_plans_and_old_tables_resume(run):
    plan = Plan.per_block({"stem": 0.0, "layer1": 0.2, "layer2": 0.5, "layer3": 0.8, "layer4": 1.0,
                           "attnpool": 1.0})
    table = run_sweep(run, ["shapes"], [0.5, plan, Plan.per_block({"stem": 0.5, "layer4": 0.5})], max_eval=48)
    rows = table[table["plan"] == plan.key]
    assert len(rows) == 4 and rows["alpha"].isna().all()  # 2 tasks x 2 splits, no alpha of its own
    assert (table["plan"] == "0.5").sum() == 4  # the all-equal plan is alpha 0.5: no new rows
    header = (run / "sweep.csv").read_text().splitlines()[0]
    assert header == "alpha,task,split,accuracy,n,plan"
    again = read_sweep(run, per_block=True)
    pd.testing.assert_frame_equal(again.sort_values(["plan", "task", "split"]).reset_index(drop=True),
                                  table.sort_values(["plan", "task", "split"]).reset_index(drop=True),
                                  check_dtype=False)
    uniform = read_sweep(run)  # what the curves and the pages along alpha read: the uniform alphas only
    assert uniform["alpha"].notna().all() and set(uniform["plan"]) == {"0", "0.5", "1"}


@pytest.mark.slow
def test_an_exported_plan_loads_in_plain_open_clip_and_scores_as_swept(run, tmp_path):
    from paint_core.data.tasks import get_task
    from paint_core.engine.evaluation import evaluate, zero_shot_head
    plan = Plan.per_block({"stem": 0.0, "layer1": 0.2, "layer2": 0.5, "layer3": 0.8, "layer4": 1.0,
                           "attnpool": 1.0})
    run_sweep(run, ["shapes"], [plan], max_eval=48)
    f = tmp_path / "plan.json"
    f.write_text(json.dumps(plan.to_json()))
    assert main(["export", "--run", str(run), "--plan", str(f), "--out", str(tmp_path / "patched")]) == 0
    sidecar = json.loads((tmp_path / "patched" / "open_clip_model.json").read_text())
    assert sidecar["alpha"] is None and sidecar["plan"] == dict(plan.blocks)
    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + str(tmp_path / "patched"))
    tokenizer = open_clip.get_tokenizer("local-dir:" + str(tmp_path / "patched"))
    model.eval()
    task = get_task("digits")
    val = torch.utils.data.Subset(task.split("val", preprocess), range(48))
    acc = evaluate(model, zero_shot_head(model, tokenizer, task.classnames, task.templates), val)
    table = read_sweep(run, per_block=True)
    swept = table[(table["plan"] == plan.key) & (table["task"] == "digits") & (table["split"] == "val")]
    assert acc == pytest.approx(float(swept["accuracy"].iloc[0]), abs=1e-9)


@pytest.mark.parametrize("method,budget", [("cma", 12), ("adamerging", 8)])
@pytest.mark.slow
def test_both_searchers_keep_the_supported_rule_on_val_and_resume(run, tmp_path, method, budget):
    cfg = SearchConfig(tolerance=0.02, budget=budget, unlabeled=64, search_batch=16, search_lr=0.05)
    out = tmp_path / f"{method}.json"
    result = search_run(run, out, method, cfg)
    table = read_sweep(run, per_block=True)
    val = table[table["split"] == "val"].pivot_table(index="plan", columns="task", values="accuracy")
    zero_shot, chosen = val.loc["0", "shapes"], val.loc[result["plan"]["key"], "shapes"]
    assert zero_shot - chosen <= 0.02 + 1e-12  # recomputed from sweep.csv, not from the searcher's report
    assert val.loc[result["plan"]["key"], "digits"] >= val.loc[result["uniform"]["key"], "digits"]
    assert set(result["blocks"]) == {"stem", "layer1", "layer2", "layer3", "layer4", "attnpool"}
    assert read_plan(out) == Plan.per_block(result["blocks"])
    assert result["evaluated"] >= 2 and result["plan"]["test"]["patch"] == pytest.approx(
        float(table[(table["plan"] == result["plan"]["key"]) & (table["split"] == "test")
                    & (table["task"] == "digits")]["accuracy"].iloc[0]))
    if method == "cma":  # a second run replays its seeded generations from sweep.csv: no new rows, same plan
        n = len(table)
        again = search_run(run, tmp_path / "again.json", method, cfg)
        assert len(read_sweep(run, per_block=True)) == n and again["blocks"] == result["blocks"]


@pytest.mark.slow
def test_the_sweep_command_measures_plan_files_beside_the_alphas(run, tmp_path, capsys):
    plan = Plan.per_block({"stem": 0.1, "layer1": 0.1, "layer2": 0.3, "layer3": 0.6, "layer4": 0.9, "attnpool": 1})
    f = tmp_path / "p.json"
    f.write_text(json.dumps(plan.to_json()))
    assert main(["sweep", "--run", str(run), "--supported", "shapes", "--alphas", "0.5", "--plans", str(f),
                 "--max-eval", "48"]) == 0
    out = capsys.readouterr().out
    assert "per-block plans:" in out and plan.key in out
    table = read_sweep(run, per_block=True)
    assert len(table[table["plan"] == plan.key]) == 4  # 2 tasks x 2 splits


@pytest.mark.slow
def test_presets_and_plan_files_never_take_a_runs_own_files(run):
    plan = early_blocks_frozen(["stem", "layer1", "layer2", "layer3", "layer4"], 0.7)
    assert dict(plan.blocks) == {"stem": 0, "layer1": 0, "layer2": 0.7, "layer3": 0.7, "layer4": 0.7}
    with pytest.raises(ValueError, match="cannot freeze"):
        early_blocks_frozen(["stem"], 0.5, frozen=2)
    for name in ("run.json", "finetuned.json"):
        with pytest.raises(WriteRefused, match="is a file of the run directory"):
            search_run(run, run / name)
