"""``ovdistill evaluate det|seg``: open-vocabulary AP / mIoU of any model's prediction files
(library: ``pipelines.evaluate``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.evaluate.det_results import evaluate_detections
from pipelines.evaluate.report import summary_line, write_det_report, write_seg_report
from pipelines.evaluate.seg_folders import evaluate_folders


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() == "true"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovdistill evaluate", description=__doc__)
    sub = parser.add_subparsers(dest="task", required=True)
    det = sub.add_parser("det", help="a COCO results JSON against COCO / LVIS ground truth")
    det.add_argument("--gt", required=True, help="ground-truth instances JSON (COCO or LVIS format)")
    det.add_argument("--dt", required=True, help="COCO results JSON: [{image_id, category_id, bbox|segmentation, score}]")
    det.add_argument("--split", required=True, help="ov_coco | lvis | world | FILE (novel class names: JSON list or one per line)")
    det.add_argument("--iou-type", choices=("bbox", "segm"), default="bbox", help="boxes, or instance masks (RLE segmentation)")
    det.add_argument("--dt-categories", default=None, help="the results' own categories ({id, name} list) to map ids by name")
    det.add_argument("--backend", choices=("pycocotools", "faster_coco_eval"), default="pycocotools",
                     help="COCO evaluator (faster_coco_eval: the same figures, faster on LVIS)")
    det.add_argument("--max-dets", type=int, default=None, help="detections per image (COCO 100, LVIS 300)")
    seg = sub.add_parser("seg", help="a folder of predicted label PNGs against a folder of ground-truth PNGs")
    seg.add_argument("--gt", required=True, help="folder of ground-truth label PNGs")
    seg.add_argument("--pred", required=True, help="folder of predicted class-index (or palette) PNGs, same stems")
    seg.add_argument("--preset", required=True, help="voc20 | context59 | context60 | coco_stuff171 | ade20k150 | world")
    seg.add_argument("--gt-suffix", default=".png", help="ground-truth file ending (COCO-Stuff: _labelTrainIds.png)")
    seg.add_argument("--pred-suffix", default=".png", help="prediction file ending")
    seg.add_argument("--workers", type=int, default=0, help="processes decoding PNGs")
    seg.add_argument("--list", default=None,
                     help="only these image ids, one per line (VOC / Context: ImageSets/Segmentation/val.txt; their label folders hold every split)")
    for p in (det, seg):
        p.add_argument("--out", default="evaluation", help="folder for metrics.json, metrics.md and the plots")
        p.add_argument("--strict", type=_bool, default=True, help="false: missing / foreign ids are a warning with a count")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        ev, files = _run(args, Path(args.out))
    except (ValueError, FileNotFoundError) as err:  # bad input: one line naming the file and the value
        print(f"ovdistill evaluate: {err}", file=sys.stderr)
        return 2
    print(summary_line(ev.metrics))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _run(args: argparse.Namespace, out: Path):
    if args.task == "det":
        ev = evaluate_detections(args.gt, args.dt, args.split, args.iou_type, args.strict, args.dt_categories, args.backend, args.max_dets)
        inputs = {"gt": args.gt, "dt": args.dt, "split": args.split, "iou_type": args.iou_type}
        files = write_det_report(ev, out, inputs)
    else:
        ev = evaluate_folders(args.gt, args.pred, args.preset, args.gt_suffix, args.pred_suffix, args.workers, args.strict, args.list)
        inputs = {"gt": args.gt, "pred": args.pred, "preset": args.preset, "list": args.list}
        files = write_seg_report(ev, out, inputs)
    return ev, files
