"""OpenCLIPTeacher against independent computations on tiny random open_clip towers."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_RN, TINY_TIMM_CNN, TINY_VIT, make_teacher

from teachers import OpenCLIPTeacher, key_smoothing, prompt_denoise, refine_logits
from teachers.templates import IMAGENET_TEMPLATES, resolve_templates


def _normalise(teacher, x):
    return (x - teacher._mean) / teacher._std


@pytest.mark.parametrize("fixture", ["vit_teacher", "rn_teacher", "timm_teacher"])
def test_encode_image_equals_open_clip_on_normalised_input(fixture, request, images):
    teacher = request.getfixturevalue(fixture)
    expected = teacher.model.encode_image(teacher.preprocess(images), normalize=True)
    torch.testing.assert_close(teacher.encode_image(images), expected)
    assert torch.allclose(expected.norm(dim=-1), torch.ones(2))


def test_preprocess_is_identity_resize_at_native_size_and_box_filter_at_half(vit_teacher):
    h, w = vit_teacher.image_size
    x = torch.rand(2, 3, h, w)
    torch.testing.assert_close(vit_teacher.preprocess(x), _normalise(vit_teacher, x))
    big = torch.rand(2, 3, 2 * h, 2 * w)
    torch.testing.assert_close(vit_teacher.preprocess(big), _normalise(vit_teacher, F.avg_pool2d(big, 2)))


@pytest.mark.parametrize("fixture", ["vit_teacher", "rn_teacher"])
def test_encode_text_is_normalised_template_average(fixture, request):
    teacher = request.getfixturevalue(fixture)
    names = ["red circle", "blue star", "cat"]
    templates = ["a photo of a {}.", "a drawing of the {}.", "{}"]
    got = teacher.encode_text(names, templates)
    rows = []
    for name in names:
        tokens = teacher.tokenizer([t.format(name) for t in templates])
        per_template = F.normalize(teacher.model.encode_text(tokens), dim=-1)
        rows.append(F.normalize(per_template.mean(0), dim=-1))
    torch.testing.assert_close(got, torch.stack(rows))
    assert got.shape == (3, teacher.embed_dim)


def test_template_sets():
    assert len(IMAGENET_TEMPLATES) == 80 and len(set(IMAGENET_TEMPLATES)) == 80
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    assert resolve_templates("scene")[0].format("cow") == "a photo of a cow."
    with pytest.raises(ValueError, match="nonsense"):
        resolve_templates("nonsense")


def test_text_cache_is_keyed_by_names_and_templates(vit_teacher, monkeypatch):
    first = vit_teacher.encode_text(["alpha", "beta"], "simple")
    calls = []
    monkeypatch.setattr(vit_teacher.model, "encode_text", lambda *a, **k: calls.append(1) or 1 / 0)
    torch.testing.assert_close(vit_teacher.encode_text(["alpha", "beta"], "simple"), first)
    assert calls == []
    with pytest.raises(ZeroDivisionError):  # a different template set is not served from the cache
        vit_teacher.encode_text(["alpha", "beta"], "scene")


def _last_block_input(visual, x):
    """Run open_clip's own forward and capture what enters the last block."""
    captured = {}
    block = visual.transformer.resblocks[-1]
    handle = block.register_forward_pre_hook(lambda mod, args: captured.setdefault("x", args[0]))
    visual(x)
    handle.remove()
    return captured["x"]


def test_vit_maskclip_equals_self_only_attention_in_last_block(vit_teacher, images):
    """The value path is exactly open_clip's last block with each token attending only to itself."""
    visual = vit_teacher.model.visual
    x = vit_teacher.preprocess(images)
    tokens = _last_block_input(visual, x)
    n = tokens.shape[1]
    self_only = torch.full((n, n), float("-inf")).fill_diagonal_(0.0)
    out = visual.transformer.resblocks[-1](tokens, attn_mask=self_only)
    out = visual.ln_post(out)[:, 1:] @ visual.proj
    gh, gw = visual.grid_size
    expected = F.normalize(out, dim=-1).transpose(1, 2).reshape(2, -1, gh, gw)
    torch.testing.assert_close(vit_teacher.encode_dense(images), expected, atol=1e-5, rtol=1e-4)


def test_vit_value_only_and_clearclip_modes_step_by_step(vit_teacher, images):
    visual = vit_teacher.model.visual
    block = visual.transformer.resblocks[-1]
    tokens = _last_block_input(visual, vit_teacher.preprocess(images))
    d = tokens.shape[-1]
    w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
    y = block.ln_1(tokens)
    q = y @ w[:d].T + b[:d]
    v = y @ w[2 * d :].T + b[2 * d :]
    gh, gw = visual.grid_size

    def finish(o):
        o = visual.ln_post(block.attn.out_proj(o))[:, 1:] @ visual.proj
        return F.normalize(o, dim=-1).transpose(1, 2).reshape(2, -1, gh, gw)

    torch.testing.assert_close(vit_teacher.encode_dense(images, mode="value_only"), finish(v), atol=1e-5, rtol=1e-4)
    heads, hd = block.attn.num_heads, d // block.attn.num_heads
    qh, vh = q.view(2, -1, heads, hd).transpose(1, 2), v.view(2, -1, heads, hd).transpose(1, 2)
    attn = (qh @ qh.transpose(-1, -2) / hd**0.5).softmax(-1)
    qq = (attn @ vh).transpose(1, 2).reshape(2, -1, d)
    torch.testing.assert_close(vit_teacher.encode_dense(images, mode="clearclip"), finish(qq), atol=1e-5, rtol=1e-4)


def test_resnet_maskclip_is_v_then_c_projection_of_layer4(rn_teacher, images):
    visual = rn_teacher.model.visual
    captured = {}
    handle = visual.layer4.register_forward_hook(lambda m, a, out: captured.setdefault("f", out))
    visual(rn_teacher.preprocess(images))
    handle.remove()
    f = captured["f"]  # [B, C, h, w]
    pool = visual.attnpool
    v = torch.einsum("bchw,oc->bohw", f, pool.v_proj.weight) + pool.v_proj.bias[:, None, None]
    out = torch.einsum("bchw,oc->bohw", v, pool.c_proj.weight) + pool.c_proj.bias[:, None, None]
    torch.testing.assert_close(rn_teacher.encode_dense(images), F.normalize(out, dim=1), atol=1e-5, rtol=1e-4)


def test_dense_at_other_size_interpolates_position_embedding(vit_teacher, images):
    feats = vit_teacher.encode_dense(images, size=(48, 64))
    assert feats.shape == (2, vit_teacher.embed_dim, 6, 8)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(2, 6, 8))
    with pytest.raises(ValueError, match="bogus"):
        vit_teacher.encode_dense(images, mode="bogus")


def test_timm_tower_dense_raises_naming_model(timm_teacher, images):
    with pytest.raises(NotImplementedError, match="tiny-timm-map-test"):
        timm_teacher.encode_dense(images)
    assert timm_teacher.dense_modes() == ()
    regions = timm_teacher.encode_regions(images, [torch.tensor([[0.0, 0.0, 40.0, 48.0]]), torch.zeros(0, 4)], scales=(1.0,))
    torch.testing.assert_close(regions, timm_teacher.encode_image(images[:1]), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fixture", ["vit_teacher", "rn_teacher"])
def test_whole_image_box_equals_image_embedding(fixture, request, images):
    teacher = request.getfixturevalue(fixture)
    h, w = images.shape[-2:]
    boxes = [torch.tensor([[0.0, 0.0, w, h]]) for _ in range(2)]
    torch.testing.assert_close(teacher.encode_regions(images, boxes, scales=(1.0,)), teacher.encode_image(images), atol=1e-5, rtol=1e-4)


def test_regions_stay_with_their_image(vit_teacher, images):
    b0 = torch.tensor([[2.0, 3.0, 20.0, 30.0], [10.0, 10.0, 40.0, 48.0]])
    b1 = torch.tensor([[0.0, 0.0, 15.0, 15.0]])
    both = vit_teacher.encode_regions(images, [b0, b1])
    torch.testing.assert_close(both[:2], vit_teacher.encode_regions(images[:1], [b0]))
    torch.testing.assert_close(both[2:], vit_teacher.encode_regions(images[1:], [b1]))
    swapped = vit_teacher.encode_regions(images.flip(0), [b1, b0])
    torch.testing.assert_close(swapped, torch.cat([both[2:], both[:2]]))


def test_context_crop_geometry_is_1_5x_about_the_centre_clipped_to_the_image(vit_teacher, images):
    """Hand-computed crops (images are 48 high, 40 wide): 1.5x about the centre, then clipped, never padded."""
    inside = [10.0, 20.0, 20.0, 30.0]      # centre (15, 25), 10 x 10  -> 15 x 15
    edge = [0.0, 0.0, 20.0, 16.0]          # centre (10, 8), 20 x 16   -> [-5, -4, 25, 20] -> clipped
    hand = {tuple(inside): [7.5, 17.5, 22.5, 32.5], tuple(edge): [0.0, 0.0, 25.0, 20.0]}
    for box, want in hand.items():
        got = vit_teacher.encode_regions(images[:1], [torch.tensor([box])], scales=(1.5,))
        torch.testing.assert_close(got, vit_teacher.encode_regions(images[:1], [torch.tensor([want])], scales=(1.0,)))
    padded = torch.tensor([[-5.0, -4.0, 25.0, 20.0]])  # what a black-padded crop would embed (check_boxes refuses it
    from teachers.image_ops import context_boxes, crop_and_resize  # as an input, so build it directly)

    crop = crop_and_resize(images[:1], torch.cat([torch.zeros(1, 1), padded], 1), vit_teacher.image_size)
    black = vit_teacher._embed(vit_teacher.normalize(crop))
    clipped = vit_teacher.encode_regions(images[:1], [torch.tensor([edge])], scales=(1.5,))
    assert not torch.allclose(black, clipped, atol=1e-3)
    torch.testing.assert_close(context_boxes(torch.tensor([inside, edge]), 1.5, 48, 40), torch.tensor([hand[tuple(inside)], hand[tuple(edge)]]))


def test_regions_average_scales_and_chunking_does_not_change_result(vit_teacher, images):
    boxes = [torch.tensor([[5.0, 5.0, 25.0, 30.0]] * 3), torch.tensor([[1.0, 2.0, 30.0, 40.0]])]
    one = vit_teacher.encode_regions(images, boxes, scales=(1.0,))
    big = vit_teacher.encode_regions(images, boxes, scales=(1.5,))
    both = vit_teacher.encode_regions(images, boxes, scales=(1.0, 1.5))
    torch.testing.assert_close(both, F.normalize(one + big, dim=-1))
    vit_teacher.region_chunk = 3
    try:
        torch.testing.assert_close(vit_teacher.encode_regions(images, boxes), both)
    finally:
        vit_teacher.region_chunk = 256


def test_teacher_never_trains(vit_teacher, images):
    student = torch.nn.Linear(3 * 32 * 32, vit_teacher.embed_dim)
    parent = torch.nn.ModuleDict({"teacher": vit_teacher, "student": student}).train()
    assert not vit_teacher.model.training
    assert all(not p.requires_grad for p in vit_teacher.parameters())
    before = {k: v.clone() for k, v in vit_teacher.state_dict().items()}
    opt = torch.optim.SGD(parent.parameters(), lr=10.0, weight_decay=0.1)
    x = F.interpolate(images, size=(32, 32))
    target = vit_teacher.encode_image(x)
    text = vit_teacher.encode_text(["a", "b"])
    loss = (1 - F.cosine_similarity(student(x.flatten(1)), target)).mean() + (student(x.flatten(1)) @ text.T).pow(2).mean()
    loss.backward()
    opt.step()
    assert any(p.grad is not None for p in student.parameters())
    for k, v in vit_teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_checkpoint_round_trip_by_path(tmp_path, images):
    src = make_teacher("tiny-vit-ckpt", TINY_VIT, seed=7)
    path = tmp_path / "tiny.pt"
    torch.save(src.model.state_dict(), path)
    loaded = OpenCLIPTeacher("tiny-vit-ckpt", str(path), model_cfg=TINY_VIT)
    for k, v in src.model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k
    torch.testing.assert_close(loaded.encode_image(images), src.encode_image(images), atol=0, rtol=0)
    assert loaded.name.startswith("tiny-vit-ckpt@file-") and loaded.name != src.name


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    src = make_teacher("tiny-vit-pickle", TINY_VIT)
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": src.model.state_dict(), "extra": warnings.WarningMessage}, path)
    with pytest.raises(ValueError, match="evil.pt"):
        OpenCLIPTeacher("tiny-vit-pickle", str(path), model_cfg=TINY_VIT)


def test_checkpoint_of_other_architecture_names_file_and_model(tmp_path):
    other = make_teacher("tiny-rn-other", TINY_RN)
    path = tmp_path / "rn.pt"
    torch.save(other.model.state_dict(), path)
    with pytest.raises(ValueError, match=r"rn\.pt.*tiny-vit-mismatch"):
        OpenCLIPTeacher("tiny-vit-mismatch", str(path), model_cfg=TINY_VIT)


def test_bad_teacher_arguments(tmp_path):
    with pytest.raises(ValueError, match="ViT-Q-99"):
        OpenCLIPTeacher("ViT-Q-99")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        OpenCLIPTeacher("tiny-vit-missing", str(tmp_path / "missing.pt"), model_cfg=TINY_VIT)
    with pytest.raises(ValueError, match="not-a-tag"):
        OpenCLIPTeacher("tiny-vit-missing", "not-a-tag", model_cfg=TINY_VIT)
    with pytest.raises(ValueError, match="fp8"):
        OpenCLIPTeacher("tiny-vit-missing", None, model_cfg=TINY_VIT, precision="fp8")


def test_bad_inputs_name_the_value(vit_teacher, images):
    with pytest.raises(ValueError, match="non-empty list"):
        vit_teacher.encode_text([])
    with pytest.raises(ValueError, match=r"\[B,3,H,W\].*\(3, 48, 40\)"):
        vit_teacher.encode_image(images[0])
    with pytest.raises(ValueError, match=r"\[0,1\].*max=255"):
        vit_teacher.encode_image(images * 255)
    with pytest.raises(ValueError, match=r"boxes\[1\]\[0\].*x2 <= x1"):
        vit_teacher.encode_regions(images, [torch.zeros(0, 4), torch.tensor([[30.0, 0.0, 10.0, 10.0]])])
    with pytest.raises(ValueError, match=r"boxes\[0\]\[1\].*outside image 0.*W=40"):
        vit_teacher.encode_regions(images, [torch.tensor([[0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 41.0, 10.0]]), torch.zeros(0, 4)])
    with pytest.raises(ValueError, match="1 entries but images has batch size 2"):
        vit_teacher.encode_regions(images, [torch.zeros(0, 4)])


def test_bf16_teacher_tracks_fp32(tmp_path, images):
    src = make_teacher("tiny-vit-bf16", TINY_VIT, seed=3)
    path = tmp_path / "w.pt"
    torch.save(src.model.state_dict(), path)
    low = OpenCLIPTeacher("tiny-vit-bf16", str(path), model_cfg=TINY_VIT, precision="bf16")
    assert low.dtype == torch.bfloat16
    got, ref = low.encode_image(images), src.encode_image(images)
    assert got.dtype == torch.float32
    assert F.cosine_similarity(got, ref).min() > 0.98
    assert F.cosine_similarity(low.encode_dense(images).flatten(2), src.encode_dense(images).flatten(2), dim=1).min() > 0.95


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _official_refine(logits, keys, pd_thresh, ks_thresh):
    """MaskCLIP's refine_output written out pixel by pixel in numpy (prompt denoising, then key smoothing)."""
    out = logits.astype(np.float64).copy()  # [K, h, w]
    kcls, h, w = out.shape
    if pd_thresh > 0:
        probs = _softmax(100 * out, 0)
        for c in range(kcls):
            if probs[c].max() < pd_thresh:
                out[c] = -100.0
    if ks_thresh > 0:
        p = _softmax(100 * out, 0).reshape(kcls, -1).T  # [N, K]
        k = keys.astype(np.float64).reshape(keys.shape[0], -1).T  # [N, C]
        k = k / np.sqrt((k ** 2).sum(axis=0, keepdims=True))  # F.normalize(k) of [N, C]: over the tokens
        n = p.shape[0]
        res = p.copy()
        for i in range(n):
            if p[i].max() < ks_thresh:
                res[i] = sum((k[i] @ k[j]) * p[j] for j in range(n))
        out = res.T.reshape(kcls, h, w)
    return out


def test_prompt_denoise_follows_the_official_rule():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 3, 4, generator=g) * 0.03
    logits[0, 2] += 0.1  # one confident class in image 0
    got = prompt_denoise(logits, threshold=0.5)
    for b in range(2):
        want = _official_refine(logits[b].numpy(), np.ones((1, 3, 4)), 0.5, 0.0)
        np.testing.assert_allclose(got[b].numpy(), want, rtol=1e-6, atol=1e-6)
    assert (got[0, 2] == logits[0, 2]).all() and (got[0, 0] == -100).all()
    allweak = torch.zeros(1, 4, 2, 2)  # nobody confident: official drops all; keep_best keeps the strongest
    assert (prompt_denoise(allweak) == -100).all() and (prompt_denoise(allweak, keep_best=True) > -1).sum() == 4


@pytest.mark.parametrize("ks_thresh", [1.0, 0.6])
def test_key_smoothing_equals_the_official_step_by_step(ks_thresh):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 3, 3, generator=g) * 0.02
    keys = torch.randn(2, 6, 3, 3, generator=g)  # non-trivial keys
    got = key_smoothing(logits, keys, threshold=ks_thresh)
    for b in range(2):
        want = _official_refine(logits[b].numpy(), keys[b].numpy(), 0.0, ks_thresh)
        np.testing.assert_allclose(got[b].numpy(), want, rtol=1e-5, atol=1e-6)
    queries = torch.randn(2, 6, 3, 3, generator=g)
    assert not torch.allclose(key_smoothing(logits, queries), got)  # smoothing with anything but the keys differs
    cosine = key_smoothing(logits, keys, affinity="cosine")  # the alternative: a convex combination of probabilities
    torch.testing.assert_close(cosine.sum(1), torch.ones(2, 3, 3))


def test_dense_logits_refine_in_the_official_order_with_out_proj_keys(vit_teacher, images):
    """keys = out_proj(k) of the last block, recomputed from the open_clip block; denoise before smoothing."""
    teacher = vit_teacher
    text = F.normalize(torch.randn(3, teacher.embed_dim, generator=torch.Generator().manual_seed(2)), dim=-1)
    visual = teacher.model.visual
    x = teacher.preprocess(images)
    captured = {}
    last = visual.transformer.resblocks[-1]
    hook = last.register_forward_pre_hook(lambda m, a: captured.setdefault("x", a[0]))
    with torch.no_grad():
        visual(x)
    hook.remove()
    y = last.ln_1(captured["x"])
    _, k, _ = F.linear(y, last.attn.in_proj_weight, last.attn.in_proj_bias).chunk(3, dim=-1)
    k_in = k[:, 1:]
    k = last.attn.out_proj(k)[:, 1:]
    feats = teacher.encode_dense(images)
    gh, gw = feats.shape[-2:]
    keys = k.transpose(1, 2).reshape(len(images), -1, gh, gw)
    logits = torch.einsum("bdhw,kd->bkhw", feats, text)
    got = teacher.dense_logits(images, text, denoise=0.5, smooth=True, output_size=(gh, gw))
    # the formulas are checked against the official step-by-step code below; here: which keys reach them
    torch.testing.assert_close(got, refine_logits(logits, keys, 0.5, True), rtol=1e-4, atol=1e-5)
    pre_out_proj = k_in.transpose(1, 2).reshape(len(images), -1, gh, gw)
    assert not torch.allclose(got, refine_logits(logits, pre_out_proj, 0.5, True))


def test_refinement_order_is_denoise_then_smooth():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 5, 4, 4, generator=g) * 0.02
    logits[0, 1, :2] += 0.05  # class 1 confident somewhere; the others mostly not
    keys = torch.randn(1, 6, 4, 4, generator=g)
    got = refine_logits(logits, keys, 0.5, True)
    want = _official_refine(logits[0].numpy(), keys[0].numpy(), 0.5, 1.0)
    np.testing.assert_allclose(got[0].numpy(), np.log(np.clip(want, 1e-12, None)) / 100, rtol=1e-4, atol=1e-5)
    reversed_order = prompt_denoise(key_smoothing(logits, keys).clamp_min(1e-12).log() / 100, 0.5)
    assert not torch.allclose(got, reversed_order)


@pytest.mark.parametrize("stride,step", [(16, 2), (8, 4)])
def test_resnet_atrous_output_stride_samples_equal_stride_32_map(rn_teacher, images, stride, step):
    coarse = rn_teacher.encode_dense(images, size=(128, 128))
    fine = rn_teacher.encode_dense(images, size=(128, 128), output_stride=stride)
    assert fine.shape[-2:] == (128 // stride, 128 // stride)
    torch.testing.assert_close(fine[..., ::step, ::step], coarse, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="output_stride=4"):
        rn_teacher.encode_dense(images, output_stride=4)


def test_timm_cnn_dense_is_the_head_at_every_position(timm_cnn_teacher, images):
    """Averaging the (unnormalised) dense map gives exactly the image embedding; atrous samples match."""
    from teachers.dense import dense_features

    teacher = timm_cnn_teacher
    x = teacher.preprocess(images)
    feats, _ = dense_features(teacher.model.visual, x, "maskclip", teacher.model_name)
    torch.testing.assert_close(F.normalize(feats.mean(dim=(2, 3)), dim=-1), teacher.encode_image(images), atol=1e-5, rtol=1e-4)
    fine, _ = dense_features(teacher.model.visual, x, "maskclip", teacher.model_name, output_stride=8)
    assert fine.shape[-2:] == (8, 8) and feats.shape[-2:] == (2, 2)
    torch.testing.assert_close(fine[..., ::4, ::4], feats, atol=1e-5, rtol=1e-4)
    assert teacher.dense_modes() == ("maskclip",)


def test_timm_max_pooled_cnn_dense_is_the_head_at_every_position(images):
    """A max-pooled timm tower (CLIPpy's kind): the dense map is the projection at every position of the trunk's map,
    the image embedding is the projection of that map's maximum (not the maximum of the dense map), and atrous
    samples match, as for the average-pooled tower."""
    from teachers.dense import dense_features

    cfg = {**TINY_TIMM_CNN, "vision_cfg": {**TINY_TIMM_CNN["vision_cfg"], "timm_pool": "max"}}
    teacher = make_teacher("tiny-timm-cnn-max-test", cfg)
    assert teacher.model.visual.trunk.global_pool.pool_type == "max" and teacher.dense_modes() == ("maskclip",)
    x = teacher.preprocess(images)
    feats, fmap = dense_features(teacher.model.visual, x, "maskclip", teacher.model_name)
    proj = teacher.model.visual.head.proj.weight
    with torch.no_grad():
        trunk_map = teacher.model.visual.trunk.forward_features(x)
        torch.testing.assert_close(fmap, trunk_map)
        torch.testing.assert_close(feats, torch.einsum("dc,bchw->bdhw", proj, trunk_map), atol=1e-5, rtol=1e-4)
        image = F.normalize(trunk_map.amax(dim=(2, 3)) @ proj.T, dim=-1)
    torch.testing.assert_close(teacher.encode_image(images), image, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(F.normalize(feats.amax(dim=(2, 3)), dim=-1), image, atol=1e-3)
    fine, _ = dense_features(teacher.model.visual, x, "maskclip", teacher.model_name, output_stride=8)
    torch.testing.assert_close(fine[..., ::4, ::4], feats, atol=1e-5, rtol=1e-4)


def test_atrous_timm_shortcut_average_leaves_padding_out():
    """A dilated ResNet-D trunk's stride-1 shortcut average covers only taps inside the map (timm's own
    ``AvgPool2dSame`` pads with zeros and counts them, halving the shortcut on the right and bottom edges)."""
    import timm
    from timm.layers import AvgPool2dSame

    from teachers.dense import _atrous_trunk, _SameAvgPoolExcludingPad

    torch.manual_seed(0)
    trunk = timm.create_model("resnet10t", pretrained=False, num_classes=0).eval()
    twin = _atrous_trunk(trunk, 8)
    pools = [m for m in twin.modules() if isinstance(m, _SameAvgPoolExcludingPad)]
    assert len(pools) == 2 and not any(isinstance(m, AvgPool2dSame) for m in twin.modules())  # layer3 and layer4
    x = torch.randn(2, 5, 7, 6)
    for pool in pools:
        # 2x2 at stride 1 over the taps inside the map: the edge row / column averages itself with its neighbour only
        want = F.avg_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, 1)
        torch.testing.assert_close(pool(x), want)
        torch.testing.assert_close(pool(torch.full((1, 3, 4, 4), 3.0)), torch.full((1, 3, 4, 4), 3.0))
    # the twin keeps the trunk's weights: its stride-32 samples of a map at a size with no edge effects agree in the
    # first dilated stage (layer3's shortcut is exact there: adjacent taps are the stride-2 window)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        coarse = trunk.layer3(trunk.layer2(trunk.layer1(trunk.maxpool(trunk.act1(trunk.bn1(trunk.conv1(x)))))))
        fine = twin.layer3(twin.layer2(twin.layer1(twin.maxpool(twin.act1(twin.bn1(twin.conv1(x)))))))
    torch.testing.assert_close(fine[..., ::2, ::2], coarse, atol=1e-5, rtol=1e-4)
