"""Crop classification with hand-written templates vs learned prompts (CoOp), on the demo's world.

    python benchmarks/prompt_crops.py [--shots 1 4 16] [--steps 200] [--seeds 0 1 2]

The shipped teacher embeds 1x crops of ground-truth boxes. Learned context trains on ``k`` labelled crops per
**base** class from the train split (CoOp's k-shot protocol, cross-entropy on cosine logits at the teacher's
logit scale, SGD lr 2e-3 as CoOp); novel classes are embedded with the same (unified) context and never seen
in training. Settings (context length, initialisation) are chosen on **val** (mean of base and novel
accuracy), and the chosen ones are reported on **test** once. Accuracy is the mean over classes of
per-class top-1 over all world classes (base and novel compete).

Prints the val selection table and the test table.
"""
from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn.functional as F

from pipelines.bench.mission import default_cache_dir, demo_spec
from pipelines.data.coco_det import CocoDetection
from pipelines.world import write_world
from pipelines.world.teacher import load_shipped_teacher
from teachers.prompts import PromptLearner


@torch.no_grad()
def crop_features(teacher, ds: CocoDetection) -> tuple[torch.Tensor, torch.Tensor]:
    feats, labels = [], []
    for i in range(len(ds)):
        image, target = ds[i]
        if len(target["boxes"]):
            feats.append(teacher.encode_regions(image[None], [target["boxes"]], scales=(1.0,)))
            labels.append(target["labels"])
    return torch.cat(feats), torch.cat(labels)


def k_shot(labels: torch.Tensor, classes: list[int], k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in classes:
        idx = (labels == c).nonzero().flatten()
        picks.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.cat(picks)


def accuracy(text: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor, ids: list[int]) -> float:
    pred = (feats @ text.T).argmax(-1)
    return float(torch.stack([(pred[labels == c] == c).float().mean() for c in ids if (labels == c).any()]).mean() * 100)


def learn(teacher, names, base, feats, labels, n_ctx, init, class_specific, steps, seed) -> PromptLearner:
    torch.manual_seed(seed)
    learner = PromptLearner(teacher, n_ctx, init, class_specific, [names[i] for i in base] if class_specific else None, seed=seed)
    opt = torch.optim.SGD(learner.parameters(), lr=2e-3, momentum=0.9)
    lut = torch.full((len(names),), -1, dtype=torch.long)
    lut[base] = torch.arange(len(base))
    scale = teacher.model.logit_scale.exp().detach()
    for _ in range(steps):
        loss = F.cross_entropy(scale * feats @ learner([names[i] for i in base]).T, lut[labels])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return learner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    spec = demo_spec(False, 0)
    world = write_world(spec, default_cache_dir() / f"world-{spec.fingerprint()}", progress=False)
    teacher, _ = load_shipped_teacher()
    sets = {s: CocoDetection(world, world / f"annotations/instances_{s}.json") for s in ("train", "val", "test")}
    names = sets["val"].class_names
    import json

    novel_names = json.loads((world / "split.json").read_text())["novel"]
    novel = [names.index(n) for n in novel_names]
    base = [i for i in range(len(names)) if i not in novel]
    data = {s: crop_features(teacher, ds) for s, ds in sets.items()}
    tr_feats, tr_labels = data["train"]

    def scores(text, split):
        f, y = data[split]
        return accuracy(text, f, y, base), accuracy(text, f, y, novel)

    rows = {"templates: a photo of a {}.": [scores(teacher.encode_text(names, "simple"), s) for s in ("val", "test")],
            "templates: 80 ImageNet + scene": [scores(teacher.encode_text(names, "imagenet+scene"), s) for s in ("val", "test")]}
    variants = {"unified, 4 ctx, random init": (4, None, False), "unified, 16 ctx, random init": (16, None, False),
                "unified, init 'a photo of a'": (None, "a photo of a", False), "class-specific, 4 ctx": (4, None, True)}
    print("\nval (choose): mean per-class accuracy, base / novel, mean over seeds\n")
    print("| prompt | " + " | ".join(f"{k}-shot base / novel" for k in args.shots) + " |")
    print("|---|" + "---|" * len(args.shots))
    for name, (val, _) in rows.items():
        print(f"| {name} | " + " | ".join(f"{val[0]:.1f} / {val[1]:.1f}" for _ in args.shots) + " |")
    chosen, test_rows = {}, {}
    for name, (n_ctx, init, specific) in variants.items():
        cells, tests = [], []
        for k in args.shots:
            vals, tsts = [], []
            for seed in args.seeds:
                pick = k_shot(tr_labels, base, k, seed)
                learner = learn(teacher, names, base, tr_feats[pick], tr_labels[pick], n_ctx or 0, init, specific, args.steps, seed)
                with torch.no_grad():
                    if specific:  # novel classes have no context of their own: the template embeds them
                        text = teacher.encode_text(names, "simple").clone()
                        text[base] = learner([names[i] for i in base])
                    else:
                        text = learner(names)
                vals.append(scores(text, "val"))
                tsts.append(scores(text, "test"))
            mean = lambda xs: tuple(sum(x[j] for x in xs) / len(xs) for j in range(2))  # noqa: E731
            cells.append(mean(vals))
            tests.append(mean(tsts))
        chosen[name] = sum(sum(c) for c in cells)
        test_rows[name] = tests
        print(f"| {name} | " + " | ".join(f"{b:.1f} / {n:.1f}" for b, n in cells) + " |")
    best = max((n for n in variants if "class-specific" not in n), key=chosen.get)
    print(f"\ntest (reported once; learned row = the unified variant chosen on val: {best}; class-specific for reference)\n")
    print("| prompt | " + " | ".join(f"{k}-shot base / novel" for k in args.shots) + " |")
    print("|---|" + "---|" * len(args.shots))
    for name, (_, test) in rows.items():
        print(f"| {name} | " + " | ".join(f"{test[0]:.1f} / {test[1]:.1f}" for _ in args.shots) + " |")
    for name in (best, "class-specific, 4 ctx"):
        print(f"| {name} | " + " | ".join(f"{b:.1f} / {n:.1f}" for b, n in test_rows[name]) + " |")


if __name__ == "__main__":
    main()
