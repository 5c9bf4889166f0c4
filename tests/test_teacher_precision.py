"""The demo teacher's inference precision: the ``auto`` rule, and a bf16 teacher that agrees with its fp32 self."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distill.teacher_key import dense_cache_key
from pipelines.bench.teacher_precision import native_bf16_cpu, teacher_precision
from pipelines.world.teacher import load_shipped_teacher, save_trunk_weights


@pytest.mark.parametrize("bf16, amx, want", [(True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")])
def test_auto_takes_bf16_only_where_the_cpu_has_it(monkeypatch, bf16, amx, want):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert native_bf16_cpu() is (bf16 or amx)
    assert teacher_precision("auto")[0] == want
    assert teacher_precision("auto", "cuda")[0] == "fp32"  # an accelerator keeps the precision the figures were made in
    assert teacher_precision("fp32") == ("fp32", "asked for") and teacher_precision("bf16")[0] == "bf16"
    with pytest.raises(ValueError, match="'fp8'"):
        teacher_precision("fp8")


def test_bf16_teacher_agrees_with_fp32_and_keys_its_own_cache(tmp_path):
    fp32, _ = load_shipped_teacher()
    bf16 = fp32.at_precision("bf16")
    assert fp32.at_precision("fp32") is fp32
    assert bf16.dtype == torch.bfloat16 and fp32.dtype == torch.float32
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 96, 96, generator=g)
    boxes = [torch.tensor([[10.0, 12.0, 50.0, 60.0], [40.0, 30.0, 90.0, 70.0]]), torch.tensor([[0.0, 0.0, 96.0, 96.0]])]
    a, b = fp32.encode_regions(images, boxes), bf16.encode_regions(images, boxes)
    assert b.dtype == torch.float32
    cos = F.cosine_similarity(a, b)
    assert cos.min() > 0.999 and not torch.equal(a, b)  # bf16 rounding, not a copy of the fp32 pass
    text = fp32.encode_text(["circle", "star"])
    assert F.cosine_similarity(text, bf16.encode_text(["circle", "star"])).min() > 0.999
    dense = [t.encode_dense(images, "maskclip", (96, 96), 8) for t in (fp32, bf16)]
    assert F.cosine_similarity(*dense, dim=1).mean() > 0.99
    key = [dense_cache_key(t, "maskclip", (96, 96), 8) for t in (fp32, bf16)]
    assert key[0]["precision"] == "fp32" and key[1]["precision"] == "bf16"  # one precision's maps never serve the other
    # the students' initial trunk comes from the fp32 teacher: a bf16 export would round it
    full = torch.load(save_trunk_weights(fp32, tmp_path / "a.pt", "timm"), weights_only=True)
    rounded = torch.load(save_trunk_weights(bf16, tmp_path / "b.pt", "timm"), weights_only=True)
    assert any(not torch.equal(full[k], rounded[k]) for k in full if full[k].is_floating_point())
