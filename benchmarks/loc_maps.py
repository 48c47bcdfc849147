"""Better maps to measure (benchmarks/localization.py), each a stand-in for a Model that evaluate()
and the timing loop call alike: `predict(image, classes)` gives a Prediction whose maps changed.

- Flipped: the maps averaged with those of the horizontally flipped frame (its classes queried
  there in the same pass, then mirrored back); the classes and scores stay the plain frame's.
- MultiScale: the maps of the same classes at several input sizes, each min-max normalised and
  resampled onto the finest grid, averaged (the graph's dynamic size makes this one file).
- dilated_export: the last stride-2 stage run at stride 1 with its later 3x3 convolutions
  dilated by 2 (a trous), so the same weights give a map twice as fine (14x14 at 224).
"""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from edge_cam.model import Model, Prediction


class Flipped:
    def __init__(self, model: Model):
        self.model, self.info, self.class_query = model, model.info, model.class_query

    def predict(self, image: np.ndarray, classes=None) -> Prediction:
        p = self.model.predict(image, classes=classes)
        asked = np.asarray(p.query_ids if p.query_ids is not None else [], np.int64)
        ids = np.concatenate([p.class_ids, asked])
        f = self.model.predict(np.ascontiguousarray(image[:, ::-1]), classes=ids)
        assert f.query_cams is not None and p.cams is not None
        back = f.query_cams[:, :, ::-1]
        k = len(p.class_ids)
        query = None if p.query_cams is None else (p.query_cams + back[k:]) / 2
        return replace(p, cams=(p.cams + back[:k]) / 2, query_cams=query)


def _normalised(cams: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.empty((len(cams), *shape), np.float32)
    for i, c in enumerate(cams):
        lo, hi = float(c.min()), float(c.max())
        c = (c - lo) / (hi - lo) if hi > lo else np.ones_like(c)
        out[i] = cv2.resize(c.astype(np.float32), shape[::-1], interpolation=cv2.INTER_LINEAR)
    return out


class MultiScale:
    """The first model chooses the classes; the last one's input is the finest (its grid is kept)."""

    def __init__(self, models: list[Model]):
        self.models, self.info, self.class_query = models, models[0].info, models[0].class_query

    def predict(self, image: np.ndarray, classes=None) -> Prediction:
        first = self.models[0].predict(image, classes=classes)
        asked = np.asarray(first.query_ids if first.query_ids is not None else [], np.int64)
        ids = np.concatenate([first.class_ids, asked])
        preds = [first] + [m.predict(image, classes=ids) for m in self.models[1:]]
        last = preds[-1]
        finest = last.query_cams if last.query_cams is not None else last.cams
        assert finest is not None and first.cams is not None
        grid = finest.shape[-2:]
        total = np.zeros((len(ids), *grid), np.float32)
        for p in preds:
            maps = p.cams if p is first else p.query_cams
            if p is first and first.query_cams is not None:
                maps = np.concatenate([first.cams, first.query_cams])
            assert maps is not None  # the later models were asked for the first one's classes
            total += _normalised(maps, grid)
        total /= len(preds)
        k = len(first.class_ids)
        return replace(first, cams=total[:k], query_cams=total[k:] if first.query_cams is not None else None,
                       resize=last.resize)


def dilated_export(weights: str, out: str, resize: str) -> None:
    """MobileNetV2 with its last stride-2 stage dilated instead (torch; the export extra)."""
    import torch.nn as nn

    from edge_cam_export.graph.models import build_model, imagenet_labels, load_weights
    from edge_cam_export.torch_export import export_module
    spec = "torchvision:mobilenet_v2"
    model = build_model(spec)
    load_weights(model, weights, spec)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    last = max(i for i, m in enumerate(convs) if m.stride == (2, 2))
    convs[last].stride = (1, 1)
    for m in convs[last + 1:]:
        if m.kernel_size != (1, 1):
            assert not isinstance(m.padding, str)  # torchvision gives its convolutions' padding in pixels
            m.dilation = (2 * m.dilation[0], 2 * m.dilation[1])
            m.padding = (2 * m.padding[0], 2 * m.padding[1])
    export_module(model.eval(), out, labels=imagenet_labels(), resize=resize, quiet=True,
                  source={"model": spec + " (last stride dilated)"})


class TwoPass:
    """The class from the centre crop (the weights' own protocol), its map from the whole frame:
    the crop's top-K and any asked classes queried on the letterboxed frame."""

    def __init__(self, classify: Model, localize: Model):
        self.classify, self.localize = classify, localize
        self.info, self.class_query = localize.info, localize.class_query

    def predict(self, image: np.ndarray, classes=None) -> Prediction:
        c = self.classify.predict(image, classes=classes)
        asked = np.asarray(c.query_ids if c.query_ids is not None else [], np.int64)
        w = self.localize.predict(image, classes=np.concatenate([c.class_ids, asked]))
        assert w.query_cams is not None
        k = len(c.class_ids)
        return replace(c, cams=w.query_cams[:k], query_cams=w.query_cams[k:] if c.query_cams is not None else None,
                       resize=w.resize)
