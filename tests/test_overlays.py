"""Overlay sheets: every label tile carries a legend of exactly the classes present, novel ones marked."""
from __future__ import annotations

import numpy as np
import torch

from pipelines.bench.overlays import LINE, PALETTE, comparison_sheet, method_sheet


def test_legends_list_the_classes_present_with_their_colours():
    names = ["background", "circle", "square", "star"]
    image = torch.rand(3, 16, 16)
    target = torch.zeros(16, 16, dtype=torch.long)
    target[2:6, 2:6] = 3  # star (novel)
    pred = torch.full((16, 16), 1)
    pred[8:, 8:] = 2
    sheet = np.asarray(method_sheet([image], [target], [pred], names, ["star"], scale=2))
    tile, header = 32, LINE + 4
    assert sheet.shape[1] == 3 * (tile + 4)
    # the ground-truth tile (column 1) lists background then star; the prediction tile circle then square
    for col, classes in ((1, [0, 3]), (2, [1, 2])):
        x = col * (tile + 4) + 2 + 5
        for j, c in enumerate(classes):
            y = header + tile + 2 + j * LINE + 6
            assert tuple(sheet[y, x]) == tuple(PALETTE[c]), (col, c)
        below = header + tile + 2 + len(classes) * LINE + 6
        assert below >= sheet.shape[0] or tuple(sheet[below, x]) == (255, 255, 255)  # nothing more listed
    # the novel class is written in red next to its swatch
    star_row = sheet[header + tile + 2 + LINE : header + tile + 2 + 2 * LINE, tile + 4 + 16 : 2 * (tile + 4)]
    assert ((star_row[..., 0] > 150) & (star_row[..., 1] < 60)).any()


def test_comparison_sheet_has_one_column_per_method():
    names = ["background", "circle"]
    images = [torch.rand(3, 8, 8) for _ in range(2)]
    labels = [torch.zeros(8, 8, dtype=torch.long) for _ in range(2)]
    sheet = comparison_sheet(images, labels, {"a": labels, "b": labels, "c": labels}, names, [], scale=4)
    assert sheet.width == 5 * (32 + 4)
