"""Dense distillation's ViLD-style ensemble: the segmenter's second head, the blend, and which loss trains which head."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_RN, make_teacher, tiny_segmenter

from distill.seg_modules import LSegDenseDistill
from students import vild_blend

NAMES, UNSEEN = ["background", "a", "b", "c"], ["c"]


def test_vild_blend_is_the_papers_geometric_mix_along_the_class_axis():
    g = torch.Generator().manual_seed(0)
    pt = torch.rand(2, 4, 3, 3, generator=g).softmax(1)
    pi = torch.rand(2, 4, 3, 3, generator=g).softmax(1)
    novel = torch.tensor([False, False, True, True])
    got = vild_blend(pt, pi, novel, 2 / 3, dim=1).numpy()
    want = np.empty_like(got)
    for k in range(4):
        lam = 1 / 3 if novel[k] else 2 / 3  # novel classes trust the distilled head (weight lambda on p_image)
        want[:, k] = pt[:, k].numpy() ** lam * pi[:, k].numpy() ** (1 - lam)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # lambda 1: seen classes read the text head only, novel classes the image head only
    one = vild_blend(pt, pi, novel, 1.0, dim=1)
    torch.testing.assert_close(one, torch.where(novel.view(1, 4, 1, 1), pi, pt))
    with pytest.raises(ValueError, match="ensemble_lambda must be in"):
        vild_blend(pt, pi, novel, 1.5, dim=1)


@pytest.mark.parametrize("arch", ["Unet", "FPN"])
def test_image_head_is_a_second_normalised_embedding_of_the_same_decoder(arch):
    from students import PixelEmbeddingSegmenter

    torch.manual_seed(0)
    unet = arch == "Unet"
    student = PixelEmbeddingSegmenter(8, arch=arch, encoder_depth=3 if unet else 5, decoder_channels=(32, 16, 8) if unet else None,
                                      image_head=True,
                                      smp_kwargs={} if unet else {"decoder_pyramid_channels": 16, "decoder_segmentation_channels": 32})
    student.eval()  # FPN's decoder has dropout: two forwards in training mode differ
    images = torch.rand(2, 3, 32, 32)
    seen = []
    hook = student.net.decoder.register_forward_hook(lambda m, a, out: seen.append(out))
    text_emb, image_emb = student.forward_heads(images)
    raw = student.net((images - student.mean) / student.std)  # smp's own forward: the text head
    hook.remove()
    torch.testing.assert_close(text_emb, F.normalize(raw, dim=1))
    head = student.distill_head
    want = F.conv2d(seen[0], head.weight, head.bias, padding=head.padding)
    torch.testing.assert_close(image_emb, F.normalize(want, dim=1))
    # at the decoder's resolution: the input's for Unet, a quarter for FPN (whose logits ``classify`` upsamples)
    assert image_emb.shape[-1] == text_emb.shape[-1] == (32 if arch == "Unet" else 8)
    torch.testing.assert_close(student(images), text_emb)
    assert tiny_segmenter(8).forward_heads(images)[1] is None


def _module(teacher, **kw):
    return LSegDenseDistill(teacher, tiny_segmenter(teacher.embed_dim, image_head=True), class_names=NAMES, unseen=UNSEEN,
                            ensemble=True, teacher_stride=8, **kw)


def test_ensemble_logits_blend_the_heads_softmaxes():
    from students import PixelEmbeddingSegmenter

    teacher = make_teacher("ens-rn", TINY_RN)
    torch.manual_seed(0)  # a learned background embedding: the text head's, not the distilled head's
    student = PixelEmbeddingSegmenter(teacher.embed_dim, arch="FPN", image_head=True, learnable_background=True,
                                      smp_kwargs={"decoder_pyramid_channels": 16, "decoder_segmentation_channels": 32})
    module = LSegDenseDistill(teacher, student, class_names=NAMES, unseen=UNSEEN, ensemble=True, ensemble_lambda=0.75,
                              teacher_stride=8).eval()
    text = F.normalize(torch.randn(4, teacher.embed_dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    module.set_buffer("text", text)
    images = torch.rand(1, 3, 64, 64)  # FPN's GroupNorm needs a deepest map over 1x1
    with torch.no_grad():
        got = module.student_logits(images)
        t_emb, i_emb = module.student.forward_heads(images)
    scale = module.hparams.logit_scale

    text_head_classes = torch.cat([F.normalize(student.background.detach(), dim=0)[None], text[1:]])  # background is class 0

    def want(ids):
        # both heads at a quarter of the input (FPN); their logits are upsampled to the input before the softmax
        text_logits = scale * torch.einsum("bdhw,kd->bkhw", t_emb, text_head_classes[ids])
        p_text = F.interpolate(text_logits, size=images.shape[-2:], mode="bilinear").softmax(1).numpy()
        image_logits = scale * torch.einsum("bdhw,kd->bkhw", i_emb, text[ids])
        p_image = F.interpolate(image_logits, size=images.shape[-2:], mode="bilinear").softmax(1).numpy()
        lam = np.array([0.25 if NAMES[i] in UNSEEN else 0.75 for i in ids]).reshape(1, -1, 1, 1)
        return np.log(p_text**lam * p_image ** (1 - lam))

    np.testing.assert_allclose(got.numpy(), want([0, 1, 2, 3]), rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # a sub-vocabulary keeps each class's seen / unseen role and the background's place
        sub = module.student_logits(images, [3, 0])
    np.testing.assert_allclose(sub.numpy(), want([3, 0]), rtol=1e-4, atol=1e-5)


def test_cross_entropy_trains_the_text_head_and_distillation_the_image_head():
    teacher = make_teacher("ens-rn", TINY_RN)
    d = teacher.embed_dim
    g = torch.Generator().manual_seed(2)
    batch = {"image": torch.rand(2, 3, 32, 32, generator=g), "label": torch.randint(0, 3, (2, 32, 32), generator=g),
             "teacher_dense": torch.randn(2, d, 4, 4, generator=g)}
    grads = {}
    for weight in (0.0, 1.0):
        module = _module(teacher, distill_weight=weight)
        module.set_buffer("text", F.normalize(torch.randn(4, d, generator=torch.Generator().manual_seed(3)), dim=-1))
        module.training_step(batch, 0).backward()
        text_head, image_head = module.student.net.segmentation_head[0].weight.grad, module.student.distill_head.weight.grad
        grads[weight] = (text_head.abs().sum().item(), 0.0 if image_head is None else image_head.abs().sum().item())
    assert grads[0.0][0] > 0 and grads[0.0][1] == 0  # cross-entropy alone never reaches the image head
    assert grads[1.0][1] > 0 and grads[1.0][0] == pytest.approx(grads[0.0][0], rel=1e-5)  # distillation never the text head


def test_ensemble_needs_a_student_with_an_image_head():
    teacher = make_teacher("ens-rn", TINY_RN)
    with pytest.raises(ValueError, match="image_head=True"):
        LSegDenseDistill(teacher, tiny_segmenter(teacher.embed_dim), class_names=NAMES, unseen=UNSEEN, ensemble=True, teacher_stride=8)


def test_calibration_subtracts_gamma_from_seen_scores_in_evaluation():
    teacher = make_teacher("ens-rn", TINY_RN)
    torch.manual_seed(0)
    module = _module(teacher, ensemble_lambda=1.0).eval()
    module.set_buffer("text", F.normalize(torch.randn(4, teacher.embed_dim, generator=torch.Generator().manual_seed(1)), dim=-1))
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        raw = module.uncalibrated_logits(images)
        module.hparams.calibration = -0.7
        got = module.predict_logits(images)
    seen = torch.tensor([name not in UNSEEN for name in NAMES]).view(1, -1, 1, 1)
    torch.testing.assert_close(got, torch.where(seen, raw + 0.7, raw))  # Chao et al.: score - gamma * 1[seen]
    # evaluation takes the arg-max of the calibrated scores: a huge gamma leaves only the unseen class, a negative one none
    label = torch.randint(0, 4, (2, 32, 32), generator=torch.Generator().manual_seed(4))
    c = NAMES.index("c")
    for gamma, want_c in ((1e4, True), (-1e4, False)):
        module.hparams.calibration = gamma
        module.test_metric.reset()
        with torch.no_grad():
            module._evaluate({"image": images, "label": label}, module.test_metric)
        iou = module.test_metric.compute()["IoU_per_class"]
        want = ((label == c).sum() / label.numel() * 100).item() if want_c else 0.0
        assert iou[c].item() == pytest.approx(want, abs=1e-3)
        assert (iou[[0, 1, 2]] == 0).all().item() == want_c
