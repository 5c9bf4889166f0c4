"""Pre-training of the embedded teacher (open_clip's contrastive loss on captioned world scenes) and its export.

Training is resumable: Lightning checkpoints go to ``OUT/checkpoints`` (``last.ckpt``) and a second run with the
same ``OUT`` continues from there (with the recipe it started with). The export (``teacher.pt`` + ``teacher.json``)
is written atomically, the JSON last, so a directory with ``teacher.json`` always holds a complete teacher.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch

from pipelines.data.atomic import save_json, save_torch
from pipelines.data.shards import file_sha256
from teachers.dense import dilated_timm_trunk

from .pretrain import EMBEDDED_TEACHER_CFG, EMBEDDED_TEACHER_NAME, CLIPPretrainer
from .spec import WORLD_VERSION
from .teacher import SHIPPED_JSON, SHIPPED_PT, TEACHER_JSON, TEACHER_PT


def check_resume_recipe(out: Path, recipe: dict, resuming: bool) -> None:
    """A run resumed from ``out`` must use the recipe it started with (its record would lie otherwise); only
    ``steps`` may grow (training continues)."""
    path = out / "recipe.json"
    if resuming and path.is_file():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in recipe.items() if old.get(k) != v}
        if set(diff) == {"steps"} and recipe["steps"] > old.get("steps", 0):
            diff = {}  # more steps of the same recipe: training continues, and the record says so
        if diff:
            changes = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items())
            raise ValueError(
                f"{out} holds a run started with another recipe ({changes}); resuming it would train the old recipe and "
                "record the new one. Use a new --out, or the original settings"
            )
    save_json(recipe, path)


def _starting_files(init_from: str | Path) -> tuple[Path, Path]:
    return (SHIPPED_PT, SHIPPED_JSON) if str(init_from) == "shipped" else (Path(init_from) / TEACHER_PT, Path(init_from) / TEACHER_JSON)


def _starting_meta(init_from: str | Path) -> dict:
    meta_path = _starting_files(init_from)[1]
    return json.loads(meta_path.read_text()) if meta_path.is_file() else {}


def starting_teacher_record(init_from: str | Path) -> dict:
    """What a fine-tuned teacher started from, for its record: the starting weights' SHA-256 and the starting
    teacher's own command and recipe (and, nested, what that one started from). ``"shipped"`` names whatever the
    package ships today, so the record, not the name, says which weights they were."""
    pt, meta = _starting_files(init_from)[0], _starting_meta(init_from)
    record = {"sha256": file_sha256(pt), "command": meta.get("command"), "recipe": meta.get("recipe")}
    if "starting_teacher" in meta:
        record["starting_teacher"] = meta["starting_teacher"]
    return record


def starting_architecture(init_from: str | Path, default_name: str) -> tuple[str, dict | None]:
    """The ``(model_name, model_cfg)`` an exported teacher records (``default_name`` and ``None`` where its record has none)."""
    meta = _starting_meta(init_from)
    return meta.get("model_name", default_name), meta.get("model_cfg")


def load_starting_weights(model: torch.nn.Module, init_from: str | Path) -> None:
    """``model`` takes the weights of an exported teacher (``"shipped"``: the package's); a teacher of another
    architecture is refused with the file named."""
    pt = _starting_files(init_from)[0]
    if not pt.is_file():
        raise FileNotFoundError(f"--init-from {init_from}: no exported teacher weights at {pt} (a pretrain-teacher --out "
                                "directory, or 'shipped')")
    state = torch.load(pt, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as err:
        raise ValueError(f"--init-from {init_from}: {pt} holds another architecture than the one to train ({err})") from None


def pretrain_teacher(
    out: str | Path,
    steps: int = 2400,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    half: bool = True,
    eval_per_class: int = 40,
    progress: bool = True,
    num_workers: int = 1,
    curriculum_steps: int | None = None,
    ckpt_every: int = 100,
    callbacks: list | None = None,
    p_crop: float = 0.5,
    model_name: str = EMBEDDED_TEACHER_NAME,
    model_cfg: dict | None = None,
    init_from: str | Path | None = None,
    train_stride: int = 32,
) -> Path:
    """Train (or resume) the embedded teacher into ``out`` and export it; returns ``out``.

    ``last.ckpt`` is written every ``ckpt_every`` steps and at the end; a killed run resumes from it and
    finishes with the weights of an uninterrupted one. ``model_name`` / ``model_cfg``: another open_clip architecture
    trained by the same recipe (default: the embedded teacher's, ``EMBEDDED_TEACHER_CFG``); the export records it, and
    ``load_teacher_dir`` builds it from the record. ``init_from``: start from an exported teacher's weights (a
    ``pretrain-teacher`` output directory, or ``"shipped"``) instead of random ones, and its architecture unless
    ``model_cfg`` names another; the curriculum then defaults to none.
    ``train_stride``: train a timm CNN tower through its trunk dilated to 16 or 8 (a finer map under the pool); the
    export is the tower as open_clip builds it (stride 32), and the record says how it was trained."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    if model_cfg is None and model_name == EMBEDDED_TEACHER_NAME and init_from is not None:
        # a fine-tune keeps its start's architecture: a pool has no weights, so a max-pooled start would otherwise load
        # silently into an average-pooled tower
        model_name, model_cfg = starting_architecture(init_from, model_name)
    cfg = EMBEDDED_TEACHER_CFG if model_cfg is None else model_cfg
    if cfg != EMBEDDED_TEACHER_CFG and model_name == EMBEDDED_TEACHER_NAME:
        raise ValueError(f"model_cfg differs from the embedded teacher's: give it its own model_name (not {model_name!r}), "
                         "so caches and records never mistake one architecture for the other")
    out = Path(out)
    torch.set_float32_matmul_precision("high")  # part of the recipe: TF32 on GPUs that have it
    L.seed_everything(seed, verbose=False)
    curriculum = (0 if init_from is not None else steps * 3 // 10) if curriculum_steps is None else curriculum_steps
    # built (and the starting weights checked) before anything is written: a refused run leaves no directory
    module = CLIPPretrainer(
        model_name=model_name, model_cfg=cfg, lr=lr, batch_size=batch_size, num_samples=(steps - curriculum) * batch_size,
        seed=seed, warmup_steps=min(100, max(1, steps // 10)), num_workers=num_workers, curriculum_steps=curriculum,
        p_crop=p_crop, train_stride=train_stride,
    )
    if init_from is not None:
        load_starting_weights(module.model, init_from)
        starting = starting_teacher_record(init_from)  # before training: a later export to the same place cannot change it
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    recipe = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "curriculum_steps": curriculum, "p_crop": p_crop}
    # recorded only when used, so that runs started before they existed resume with the recipe they recorded
    if init_from is not None:
        recipe["init_from"] = str(init_from)
    if train_stride != 32:
        recipe["train_stride"] = train_stride
    check_resume_recipe(out, recipe, last.is_file())
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=-1,  # max_steps decides; a resumed run with more steps keeps going
        reload_dataloaders_every_n_epochs=1,
        logger=False,
        callbacks=[
            ModelCheckpoint(
                dirpath=ckpt_dir, save_last=True, every_n_train_steps=max(1, min(ckpt_every, steps)), enable_version_counter=False
            ),
            *(callbacks or []),
        ],
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
    )
    start = time.time()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(module, ckpt_path=str(last) if last.is_file() else None)
    train_s = time.time() - start
    if train_stride != 32:  # the teacher is used (and so measured) as open_clip builds the tower
        module.model.visual.trunk = dilated_timm_trunk(module.model.visual.trunk, 32)
    crops = module.zero_shot(eval_per_class)
    state = module.model.state_dict()
    if half:  # halves the shipped file; OpenCLIPTeacher loads it back into fp32 parameters
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_torch(state, out / TEACHER_PT)
    # another architecture is named, and its config read back from this very file (``--model-cfg`` takes a teacher.json)
    architecture = "" if cfg == EMBEDDED_TEACHER_CFG else f"--model-name {model_name} --model-cfg THIS_FILE "
    # the starting teacher is START: its record (below) says which weights and how to make them
    placeholders = {"init_from": "START"}
    command = f"ovdistill pretrain-teacher --out OUT {architecture}" + " ".join(
        f"--{k.replace('_', '-')} {placeholders.get(k, v)}" for k, v in recipe.items() if k != "curriculum_steps"
    )
    record = {
        "model_name": model_name,
        "model_cfg": cfg,
        "world_version": WORLD_VERSION,
        "recipe": recipe,
        "command": command,
        "train_seconds": round(train_s, 1),
        "zero_shot_crop_accuracy": {"per_class_crops": eval_per_class, "crop_seed": 0, **crops},
    }
    if init_from is not None:
        record["starting_teacher"] = starting
    save_json(record, out / TEACHER_JSON)
    return out
