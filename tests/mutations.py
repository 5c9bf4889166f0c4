"""Mutation check: break one formula at a time and show that a test notices (not collected by pytest).

    python tests/mutations.py            # prints a markdown table: mutation | file | tests run | caught?
    python tests/mutations.py noise      # only the mutations whose name contains "noise"

Each mutation is a textual edit of one source line; the file is restored afterwards whatever happens.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (name, file, original text, mutated text, tests to run)
MUTATIONS = [
    ("pseudo labeller runs the backbone twice (box regression ignores the proposals' pass)", "pipelines/offline/pseudo_labels.py",
     "boxes = proposer.refine_boxes(images, boxes, features=features)", "boxes = proposer.refine_boxes(images, boxes)",
     "tests/test_det_parts.py"),
    ("background threshold keeps the confident pixels instead", "distill/seg_modules.py",
     "return labels.masked_fill(confidence < threshold, self.background_index)",
     "return labels.masked_fill(confidence > threshold, self.background_index)", "tests/test_background_threshold.py"),
    ("background threshold ignores logit_scale", "distill/seg_modules.py",
     "confidence = (self.hparams.logit_scale * logits.float()).softmax(1).amax(1)", "confidence = logits.float().softmax(1).amax(1)",
     "tests/test_background_threshold.py"),
    ("ViLD-ensemble scores renormalised by a softmax", "students/region_heads.py",
     "return class_output if self.ensembling else F.softmax(class_output, -1)", "return F.softmax(class_output, -1)",
     "tests/test_det_parts.py"),
    ("ensemble weights swapped between seen and novel classes", "students/ensemble.py",
     "w_text = torch.where(novel.to(p_text.device), 1 - lam, lam)", "w_text = torch.where(novel.to(p_text.device), lam, 1 - lam)",
     "tests/test_seg_ensemble.py"),
    ("dense distillation trains the text head in the ensemble", "distill/seg_modules.py",
     "distill = dense_feature_loss(emb if image_emb is None else image_emb,", "distill = dense_feature_loss(emb,",
     "tests/test_seg_ensemble.py"),
    ("segmentation ensemble scores the image head against the learned background", "distill/seg_modules.py",
     "p_image = self.student.classify(image_emb, text, scale, size=size)", "p_image = self.student.classify(image_emb, text, scale, bg, size=size)",
     "tests/test_seg_ensemble.py"),
    ("segmenter upsamples its logits by nearest neighbour", "students/segmenter.py",
     'logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)',
     'logits = F.interpolate(logits, size=tuple(size), mode="nearest")', "tests/test_seg_parts.py tests/test_seg_ensemble.py"),
    ("segmenter keeps smp's embedding upsampling when asked for logits", "students/segmenter.py",
     "            head[1] = nn.Identity()", "            pass", "tests/test_seg_parts.py tests/test_seg_ensemble.py"),
    ("segmentation ensemble's second head shares the text head's convolution", "students/segmenter.py",
     "self.distill_head(decoded)", "net.segmentation_head[0](decoded)", "tests/test_seg_ensemble.py"),
    ("detector RoIAlign gradient counts samples beyond the map (torchvision skips them)", "students/roi_pool.py",
     "valid = ((pos >= -1.0) & (pos <= size)).to(start.dtype)", "valid = torch.ones_like(pos)", "tests/test_roi_pool.py"),
    ("teacher work run one piece after another (cache shards, region chunks)", "teachers/side_by_side.py",
     "workers = min(len(items), threads)", "workers = 1 or min(len(items), threads)",
     "tests/test_teacher_cache.py tests/test_region_teacher.py"),
    ("real det configs keep torchvision's 0.05 score threshold", "configs/det/real.yaml",
     "box_score_thresh: 0.0,", "box_score_thresh: 0.05,", "tests/test_cli.py"),
    ("MaskCLIP refinements in reversed order (smooth, then denoise)", "teachers/refine.py",
     "    if denoise is not None:\n        logits = prompt_denoise(logits, threshold=denoise)\n    if smooth:\n        logits = key_smoothing(logits, keys, affinity=affinity).clamp_min(1e-12).log() / 100.0",
     "    if smooth:\n        logits = key_smoothing(logits, keys, affinity=affinity).clamp_min(1e-12).log() / 100.0\n    if denoise is not None:\n        logits = prompt_denoise(logits, threshold=denoise)",
     "tests/test_teachers.py"),
    ("key smoothing with keys taken before out_proj", "teachers/dense.py",
     "keys = last.attn.out_proj(k)[:, 1:]", "keys = k[:, 1:]", "tests/test_teachers.py"),
    ("key smoothing with queries instead of keys", "teachers/dense.py",
     "keys = last.attn.out_proj(k)[:, 1:]", "keys = last.attn.out_proj(q)[:, 1:]", "tests/test_teachers.py"),
    ("key-smoothing affinity clamped and row-normalised (cosine) by default", "teachers/refine.py",
     'affinity: Literal["official", "cosine"] = "official",\n) -> Tensor:\n    """Per-pixel', 'affinity: Literal["official", "cosine"] = "cosine",\n) -> Tensor:\n    """Per-pixel',
     "tests/test_teachers.py"),
    ("context crop 2.25x instead of 1.5x", "teachers/image_ops.py",
     "out = scale_boxes(boxes, scale)", "out = scale_boxes(boxes, scale * scale)", "tests/test_teachers.py"),
    ("context crop padded with black instead of clipped", "teachers/image_ops.py",
     "return torch.minimum(out.clamp_min(0), limits)", "return out", "tests/test_teachers.py"),
    ("hIoU 0.0 when a side has nothing to evaluate", "distill/metrics/segmentation.py",
     "            h = math.nan", "            h = 0.0", "tests/test_seg_metric.py"),
    ("NaN metrics logged as 0.0", "distill/teacher_student.py",
     'scalars = {f"{prefix}/{k}": v for k, v in out.items() if not isinstance(v, Tensor)}',
     'scalars = {f"{prefix}/{k}": (0.0 if v != v else v) for k, v in out.items() if not isinstance(v, Tensor)}',
     "tests/test_method_formulas.py"),
    ("world settings tuned on the test split", "benchmarks/choose_on_val.py",
     'return score(module, dm, "val")', 'return score(module, dm, "test")',
     "tests/test_layering.py"),
    ("text temperature x10", "students/region_heads.py",
     "out = self.embed(x) @ classes.T / self.tau", "out = self.embed(x) @ classes.T / (self.tau * 10)", "tests/test_det_parts.py"),
    ("learned background embedding dropped", "students/region_heads.py",
     "classes = torch.cat([F.normalize(self.background, dim=0)[None], self.text.to(text_x.dtype)])",
     "classes = torch.cat([self.text[:1].to(text_x.dtype) * 0, self.text.to(text_x.dtype)])", "tests/test_det_parts.py"),
    ("ViLD-image L1 -> L2", "distill/det_losses.py",
     "return (region_embeddings - teacher_embeddings).abs().sum(-1).mean()",
     "return (region_embeddings - teacher_embeddings).pow(2).sum(-1).mean()", "tests/test_method_formulas.py"),
    ("MaskCLIP+ self-training switch never happens", "distill/seg_modules.py",
     "return bool(total) and self.global_step >= self.hparams.self_train_after * total", "return False",
     "tests/test_method_formulas.py"),
    ("held-out labels not hidden in training splits", "pipelines/data/seg_folder.py",
     "label = self.hide.hide(label)", "label = label", "tests/test_method_contract.py"),
    ("MaskCLIP value path without the official residual + MLP", "teachers/dense.py",
     'if mode == "maskclip":\n        out = tokens', 'if mode == "never":\n        out = tokens', "tests/test_teachers.py"),
    ("resumed sampler does not skip the consumed batches", "pipelines/data/loaders.py",
     'indices = indices[int(self.resume["batches"]) * self.batch_size :]', "indices = indices", "tests/test_loaders.py"),
    ("training order ignores the epoch after a resume (Lightning sets it late)", "pipelines/data/loaders.py",
     "            self.set_epoch(int(self.trainer.current_epoch))", "            pass", "tests/test_loaders.py"),
    ("augmentation drawn from the global RNG", "pipelines/data/seg_datamodule.py",
     "g = augment_generator(self.seed, epoch or 0, i)", "g = None", "tests/test_loaders.py"),
    ("evaluate det leaves a category out", "pipelines/evaluate/det_results.py",
     "        ev.params.catIds = cat_ids\n", "        ev.params.catIds = cat_ids[:-1]\n", "tests/test_evaluate.py"),
    ("evaluate seg ignores the preset's reduce_zero_label", "pipelines/evaluate/seg_folders.py",
     "PairCounts(pairs, len(names), rzl)", "PairCounts(pairs, len(names), False)", "tests/test_evaluate.py"),
    ("learned context never swapped into the prompt", "teachers/prompts.py",
     "output[slots] = ctx.reshape(-1, ctx.shape[-1]).to(output.dtype)", "pass", "tests/test_prompts.py"),
    ("prompt tuning trains on every class, held-out ones included", "distill/prompt_modules.py",
     "        names = [self.class_names[i] for i in self.base_ids]\n        text = self.prompt(names)",
     "        names = self.class_names\n        text = self.prompt(names)", "tests/test_prompts.py"),
    ("cached map of a flipped sample not flipped", "pipelines/data/teacher_cache.py",
     "    if flip:\n        if mirrored is None:", "    if False:\n        if mirrored is None:", "tests/test_teacher_cache.py"),
    ("cached map not cut to the crop window", "pipelines/data/teacher_cache.py",
     "        item[\"teacher_dense\"] = crop_dense(plain, box, image_hw)", "        item[\"teacher_dense\"] = plain", "tests/test_teacher_cache.py"),
    ("MaskCLIP+ pseudo-labels padding from a zero cached map", "distill/seg_modules.py",
     "        if valid is not None:  # padding", "        if False:  # padding", "tests/test_teacher_cache.py"),
    ("teacher cache key compared field by field: never", "distill/teacher_key.py",
     "    return [f\"{f}: cache", "    return [] and [f\"{f}: cache", "tests/test_teacher_cache.py"),
    ("cache shard checksum not verified", "pipelines/data/shards.py",
     "    if file_sha256(path) != sha:", "    if False:", "tests/test_teacher_cache.py"),
    ("side-by-side workers keep every kernel thread (cache bytes would depend on process count)", "teachers/side_by_side.py",
     "        torch.set_num_threads(1)  # the only place", "        pass  # the only place",
     "tests/test_teacher_cache.py tests/test_region_teacher.py"),
    ("dilated timm shortcut average counts the zero padding (timm's AvgPool2dSame)", "teachers/dense.py",
     "        return summed / count", "        return summed", "tests/test_teachers.py"),
    ("dense-pooled regions read the map in image pixels", "teachers/region_pool.py",
     "    scale_y, scale_x = feats.shape[-2] / height, feats.shape[-1] / width", "    scale_y, scale_x = 1.0, 1.0",
     "tests/test_region_teacher.py"),
    ("learning-rate schedule stepped once an epoch", "distill/lr_schedule.py",
     '"interval": "step", "frequency": 1', '"interval": "epoch", "frequency": 1', "tests/test_lr_schedule.py"),
    ("segmentation optimiser built without the schedule", "distill/seg_base.py",
     "        return with_schedule(opt, hp.lr_schedule,", "        return opt or with_schedule(opt, hp.lr_schedule,",
     "tests/test_lr_schedule.py"),
    ("teacher's near-object background band one pixel short", "pipelines/world/zeroshot.py",
     "F.max_pool2d(objects, 2 * near + 1, stride=1, padding=near)", "F.max_pool2d(objects, 2 * near - 1, stride=1, padding=near - 1)",
     "tests/test_zeroshot_dense.py"),
    ("PAMR's affinity spread by the variance instead of the standard deviation", "teachers/pamr.py",
     "sigma = torch.cat([near, image[:, :, None]], dim=2).std(dim=2, keepdim=True)",
     "sigma = torch.cat([near, image[:, :, None]], dim=2).var(dim=2, keepdim=True)", "tests/test_pamr.py"),
    ("PAMR's refinement left out of dense_logits", "teachers/openclip.py",
     "        if not pamr_steps:\n            return logits", "        if True:\n            return logits", "tests/test_pamr.py"),
    ("MaskCLIP ignores inference: slide", "distill/seg_modules.py",
     '        if hp.inference == "slide":\n            return slide_inference(fn, images, len(self.class_names), hp.crop, hp.stride, divisor=1)\n        return fn(images)',
     "        return fn(images)", "tests/test_seg_parts.py"),
    ("calibrated stacking left out of prediction", "distill/seg_base.py",
     "        if not gamma:\n            return logits", "        if True:\n            return logits", "tests/test_seg_ensemble.py"),
    ("evaluation logits resized to the original label by nearest neighbour (mmseg: bilinear)", "distill/seg_base.py",
     'return F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)',
     'return F.interpolate(logits, size=label.shape[-2:], mode="nearest")', "tests/test_seg_protocol.py"),
    ("training scale ignores img_scale", "pipelines/data/seg_datamodule.py",
     "s *= keep_ratio_factor(h, w, self.img_scale)", "s *= 1.0", "tests/test_seg_protocol.py"),
    ("teacher_size: input squashes to the teacher's own size", "distill/seg_base.py",
     'return tuple(images.shape[-2:]) if size == "input" else size', 'return None if size == "input" else size',
     "tests/test_seg_protocol.py"),
    # a transfer test that passes with a noise teacher proves nothing: replace the teacher's signal by noise
    ("dense teacher signal replaced by noise", "teachers/dense.py",
     "    return feat.permute(0, 3, 1, 2), fmap", "    return torch.randn_like(feat.permute(0, 3, 1, 2)), fmap",
     "tests/test_transfer.py -m slow -k segmentation"),
    ("dense distillation target replaced by noise", "distill/seg_modules.py",
     "image_emb, self.teacher_dense(batch), self.hparams.distill_loss)",
     "image_emb, torch.randn_like(self.teacher_dense(batch)), self.hparams.distill_loss)",
     "tests/test_transfer.py -m slow -k segmentation"),
    ("region teacher signal replaced by noise", "teachers/openclip.py",
     "        return F.normalize(emb, dim=-1)", "        return F.normalize(torch.randn_like(emb), dim=-1)",
     "tests/test_transfer.py -m slow -k vild"),
    ("val question scores every inference setting without applying it", "pipelines/bench/inference_settings.py",
     "                        module.hparams.update(setting)", "                        pass", "tests/test_inference_settings.py"),
    ("student replay serves one batch's output for another", "pipelines/bench/inference_settings.py",
     "return isinstance(a, Tensor) and isinstance(b, Tensor) and (a is b or torch.equal(a, b))", "return True",
     "tests/test_inference_settings.py"),
    ("pretrain_teacher trains the embedded architecture whatever model_cfg says", "pipelines/world/pretrain_run.py",
     "model_name=model_name, model_cfg=cfg, lr=lr", "model_name=model_name, model_cfg=EMBEDDED_TEACHER_CFG, lr=lr",
     "tests/test_pretrain_teacher.py"),
    ("a fine-tune from a max-pooled teacher trains the default average-pooled tower", "pipelines/world/pretrain_run.py",
     "        model_name, model_cfg = starting_architecture(init_from, model_name)", "        pass",
     "tests/test_pretrain_teacher.py -k dilated"),
    ("pretrain-teacher command line drops --model-cfg", "pipelines/commands/teacher.py",
     "model_name=args.model_name, model_cfg=cfg,", "model_name=args.model_name, model_cfg=None,", "tests/test_pretrain_teacher.py"),
    ("prediction passes keep Lightning's logger (a log directory each shifts the README's run numbers)", "pipelines/cli.py",
     "    if not logger:\n", "    if logger is None:\n", "tests/test_run_numbering.py"),
    ("predict writes boxes as xyxy, not COCO's xywh", "pipelines/offline/prediction_writer.py",
     "xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()", "xywh = boxes.tolist()",
     "tests/test_predict_writer.py -m slow -k det"),
    ("predict names each PNG after another image of its batch", "pipelines/offline/prediction_writer.py",
     'zip(batch["index"].tolist(), prediction, strict=True)', 'zip(batch["index"].tolist()[::-1], prediction, strict=True)',
     "tests/test_predict_writer.py"),
    ("bench split: the benches score test whatever split they are asked", "pipelines/bench/trainer.py",
     '    if split == "test":', '    if split in ("test", "val"):', "tests/test_bench_split.py"),
    ("bench split: MaskCLIP+ trains on the demo map's teacher cache whatever map it is given", "pipelines/bench/segmentation.py",
     "world_method_data(teacher, world, cls, {**teacher_args, **extra}, batch_size, progress)",
     "world_method_data(teacher, world, cls, extra, batch_size, progress)", "tests/test_bench_split.py"),
    ("starting teacher record hashes the JSON, not the weights", "pipelines/world/pretrain_run.py",
     '"sha256": file_sha256(pt)', '"sha256": file_sha256(_starting_files(init_from)[1])', "tests/test_pretrain_teacher.py -k dilated"),
    ("predict ignores --predictions.split (always the test split)", "pipelines/offline/prediction_writer.py",
     "trainer.datamodule.predict_split = self.split", 'trainer.datamodule.predict_split = "test"', "tests/test_predict_writer.py"),
    ("dense map's cross-group share counts background as a seen class", "pipelines/world/zeroshot.py",
     "(unseen[lab] & seen[named]).sum()", "(unseen[lab] & ~unseen[named]).sum()", "tests/test_zeroshot_dense.py -k cross"),
]


def run(name: str, file: str, old: str, new: str, tests: str) -> bool:
    path = ROOT / file
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"mutation {name!r}: the original text is not found exactly once in {file}")
    try:
        path.write_text(text.replace(old, new))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests.split()], cwd=ROOT,
                              capture_output=True, text=True)
    finally:
        path.write_text(text)
    return proc.returncode != 0


def main() -> int:
    print("| mutation | file | tests | caught |\n|---|---|---|---|")
    missed = 0
    # optional: run the mutations whose name contains these words ("noise" selects the noise teachers, not "denoise")
    only = re.compile(rf"\b{re.escape(' '.join(sys.argv[1:]))}\b")
    for name, file, old, new, tests in (m for m in MUTATIONS if only.search(m[0])):
        caught = run(name, file, old, new, tests)
        missed += not caught
        print(f"| {name} | `{file}` | `{tests}` | {'yes' if caught else '**NO**'} |", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
