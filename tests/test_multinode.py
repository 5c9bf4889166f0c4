"""Several nodes with torchrun: 2 nodes x 1 process (CPU, gloo) build the teacher cache bit-identically to one
process, and fit a segmentation and a detection method whose synced validation metrics equal a 1-process
validation of the same checkpoint. A multi-rank cache build killed with SIGKILL finishes when re-run."""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from pipelines.cli import lightning_cli

ROOT = Path(__file__).resolve().parents[1]
SEG = ["-c", "configs/seg/world.yaml", "-c", "configs/seg/method/maskclip_plus.yaml", "--model.init_args.student.init_args.encoder_weights", "null"]
DET = ["-c", "configs/det/world.yaml", "-c", "configs/det/method/vild_text.yaml", "--model.init_args.student.init_args.weights", "null"]


def _env(one_thread: bool = True) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    env.pop("OMP_NUM_THREADS", None)
    return {**env, "OMP_NUM_THREADS": "1"} if one_thread else env


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_2_nodes(args: list[str]) -> None:
    """``torchrun --nnodes 2 --node_rank {0,1}`` on this machine: two 'nodes' of one process each."""
    port = _port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(rank),
             "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "pipelines.cli", *args],
            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in (0, 1)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, f"node {rank} failed:\n{out[-4000:]}"


def _run(args: list[str]) -> subprocess.CompletedProcess:
    # every thread of the machine, as a user's single process runs (torchrun gives its processes one thread each)
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=_env(one_thread=False), capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def _shards(root: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(root.glob("shard-*"))}


def _fit_config(path: Path, world: Path, out: Path, nodes: int, cache: Path | None) -> Path:
    callbacks = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": str(out / "ckpt"), "save_last": True}},
                 {"class_path": "metrics_dump.DumpMetrics", "init_args": {"path": str(out / "metrics.json")}}]
    data = {"world": str(world), "batch_size": 2, "eval_batch_size": 2}
    if cache is not None:
        data["teacher_cache"] = str(cache)
    cfg = {"trainer": {"max_epochs": 1, "max_steps": -1, "num_nodes": nodes, "devices": 1, "strategy": "ddp", "logger": False,
                       "enable_progress_bar": False, "check_val_every_n_epoch": 1, "num_sanity_val_steps": 0,
                       "default_root_dir": str(out), "callbacks": callbacks},
           "data": {"init_args": data}}
    path.write_text(json.dumps(cfg))
    return path


def _validate_one_process(base: list[str], cfg: Path, ckpt: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = lightning_cli([*base, "-c", str(cfg), "--trainer.num_nodes", "1", "--trainer.strategy", "auto", "--trainer.callbacks", "[]"],
                           run=False)
        return cli.trainer.validate(cli.model, cli.datamodule, ckpt_path=str(ckpt), verbose=False)[0]


def _same(a: dict, b: dict) -> bool:
    return all(k in b and (abs(a[k] - b[k]) < 1e-5 or (math.isnan(a[k]) and math.isnan(b[k]))) for k in a)


@pytest.mark.slow
def test_two_nodes_build_the_cache_and_fit_seg_and_det_as_one_process_would(tiny_world, tmp_path):
    # the cache: 2 nodes vs 1 process, bit for bit
    cache_args = ["cache", *SEG, "--data.init_args.world", str(tiny_world), "--shard-size", "4"]
    torchrun_2_nodes([*cache_args, "--out", str(tmp_path / "c2"), "--trainer.num_nodes", "2", "--trainer.strategy", "ddp"])
    _run([*cache_args, "--out", str(tmp_path / "c1")])
    two, one = _shards(tmp_path / "c2"), _shards(tmp_path / "c1")
    assert len(one) == 8 and two == one
    assert json.loads((tmp_path / "c2" / "index.json").read_text()) == json.loads((tmp_path / "c1" / "index.json").read_text())

    # a seg method reading that cache and a det method, each fitted on 2 nodes
    for name, base, cache in (("seg", SEG, tmp_path / "c2"), ("det", DET, None)):
        out = tmp_path / name
        out.mkdir()
        cfg = _fit_config(out / "run.yaml", tiny_world, out, 2, cache)
        torchrun_2_nodes(["fit", *base, "-c", str(cfg)])
        result = json.loads((out / "metrics.json").read_text())
        assert result["world_size"] == 2 and result["num_nodes"] == 2
        single = _validate_one_process(base, cfg, out / "ckpt" / "last.ckpt")
        assert set(result["metrics"]) <= set(single) and len(result["metrics"]) >= 4
        assert _same(result["metrics"], single), (name, result["metrics"], single)
        print(f"\n{name}: 2 nodes {result['metrics']}\n{name}: 1 process {single}")


@pytest.mark.slow
def test_a_multi_rank_cache_build_killed_with_sigkill_finishes_on_rerun(tiny_world, tmp_path):
    args = ["cache", *SEG, "--data.init_args.world", str(tiny_world), "--shard-size", "1", "--model.init_args.teacher_size", "[256, 256]"]
    _run([*args, "--out", str(tmp_path / "clean")])
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args, "--out", str(killed), "--trainer.devices", "2",
                             "--trainer.strategy", "ddp"], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while len(list(killed.glob("*.sha256"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(killed.glob("*.sha256")))
    assert not (killed / "index.json").exists() and 2 <= done < 16, f"the kill was meant to land mid-build ({done} shards done)"
    r = _run([*args, "--out", str(killed)])
    assert f"{16 - done} computed by rank 0" in r.stdout or f"({16 - done} computed" in r.stdout, r.stdout
    assert _shards(killed) == _shards(tmp_path / "clean")  # every shard complete and identical: 0 corrupt
    assert not list(killed.glob(".*.tmp"))
