"""The composed configs the tests run: every file under ``configs/`` appears in at least one combination
(``test_every_config_file_is_in_a_tested_combination``). The README lists the same commands."""
from __future__ import annotations

SEG_METHODS = ("lseg", "dense_distill", "dense_distill_ensemble", "maskclip", "maskclip_pamr", "maskclip_plus")
DET_METHODS = ("vild_text", "vild", "vild_ensemble", "pseudo_box")

#: (base, data or None, method) -> -c files in order
SEG_REAL = [("voc20", m) for m in SEG_METHODS] + [("context59", "lseg"), ("context60", "maskclip_plus"), ("coco_stuff171", "dense_distill")]
DET_REAL = [("ov_coco", m) for m in DET_METHODS] + [("ov_lvis", "vild_text")]


def combos() -> list[list[str]]:
    out = [["configs/seg/real.yaml", f"configs/seg/data/{d}.yaml", f"configs/seg/method/{m}.yaml"] for d, m in SEG_REAL]
    out += [["configs/seg/world.yaml", f"configs/seg/method/{m}.yaml"] for m in SEG_METHODS]
    out += [["configs/seg/world.yaml", f"configs/seg/method/{m}.yaml", "configs/seg/cached.yaml"] for m in ("dense_distill", "maskclip_plus")]
    out += [["configs/det/real.yaml", f"configs/det/data/{d}.yaml", f"configs/det/method/{m}.yaml"] for d, m in DET_REAL]
    out += [["configs/det/world.yaml", f"configs/det/method/{m}.yaml"] for m in DET_METHODS]
    out += [["configs/prompts/world.yaml"], ["configs/prompts/real.yaml", "configs/det/data/ov_coco.yaml"]]
    return out


def config_args(files: list[str]) -> list[str]:
    return [a for f in files for a in ("-c", f)]
