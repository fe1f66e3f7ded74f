"""Candidate shifts of the real digits: zero-shot vs fine-tuned (micro-rn-l/digits run), test split, 300 images.

Run: python scripts/digit_shift_candidates.py  (docs/experiments.md has the numbers).
"""
import numpy as np, torch
from PIL import Image, ImageFilter
from paint_core.studies.patch import load_run
from paint_core.engine.evaluation import zero_shot_head, predict
from paint_core.data import world as w
from paint_core.data.embedded import _sklearn_digits
from paint_core.data.tasks import get_task
torch.set_num_threads(2)
run = load_run("cached_results/micro-rn-l/digits")
images, targets, idx = _sklearn_digits(); keep = idx["test"][:300]
t = get_task("digits"); head = zero_shot_head(run.model, run.tokenizer, t.classnames, t.templates)
def base(i): return w.digit_grid_to_image(images[i])
def small(i):
    rng = np.random.default_rng(i); im = base(i).resize((36, 36)); c = Image.new("RGB", (64, 64)); c.paste(im, tuple(int(v) for v in rng.integers(0, 28, 2))); return c
cands = {
 "colour pairs": lambda i: w.digit_grid_to_image(images[i], ink=(240, 215, 40), paper=(40, 80, 230)),
 "inverted": lambda i: w.digit_grid_to_image(images[i], ink=(0,0,0), paper=(255,255,255)),
 "grey ink": lambda i: w.digit_grid_to_image(images[i], ink=(150,150,150), paper=(0,0,0)),
 "coloured ink on black": lambda i: w.digit_grid_to_image(images[i], ink=w.COLOURS[list(w.COLOURS)[i % 7]], paper=(0,0,0)),
 "small, moved": small,
 "rotated 25": lambda i: base(i).rotate(25 if i % 2 else -25),
 "blur": lambda i: base(i).filter(ImageFilter.GaussianBlur(3)),
 "noise": lambda i: Image.fromarray(np.clip(np.asarray(base(i), np.float32) + np.random.default_rng(i).normal(0, 60, (64,64,3)), 0, 255).astype(np.uint8)),
}
y = torch.tensor(targets[keep])
for name, f in {"clean": base, **cands}.items():
    x = torch.stack([run.preprocess(f(int(i))) for i in keep])
    accs = []
    for state in (run.theta_zs, run.theta_ft):
        run.model.load_state_dict(state)
        accs.append(float((predict(run.model, head, x).argmax(-1) == y).float().mean()))
    print(f"{name:24s} zero-shot {100*accs[0]:5.1f}  fine-tuned {100*accs[1]:5.1f}")
