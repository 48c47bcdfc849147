"""The teacher's input size chosen at run time.

A GAP network is fully convolutional, so `edge-cam export` gives its graph a dynamic height and
width: the same file runs at the trained size (the metadata's `edge_cam.input.size`, the default)
or at any other, and a larger input gives a finer CAM (one cell per `stride` pixels), which can
separate objects that merge at 7x7. A graph exported before, or one whose network fixes its size,
takes only its own size.
"""
from __future__ import annotations

from collections.abc import Sequence

from .errors import EdgeCamError
from .metadata import MAX_INPUT_SIDE

# The smallest side the dynamic graphs accept (export's torch.export.Dim minimum): below it the
# five stride-2 stages of common backbones leave nothing to pool.
MIN_SIDE = 32


def is_dynamic(shape: Sequence[int]) -> bool:
    """Whether an NHWC image input of this shape (-1 where dynamic) takes any height and width."""
    return len(shape) == 4 and shape[1] == -1 and shape[2] == -1


class InputSize:
    """What size each frame is resized to before the graph.

    requested: None (the trained size), (H, W), or one int, the long side: each frame then keeps
    its own aspect, each side rounded to a multiple of `stride` so the CAM's cells tile the input.
    """

    def __init__(self, requested: int | Sequence[int] | None, trained: tuple[int, int], stride: float | None,
                 dynamic: bool, where: str = "the model"):
        th, tw = trained
        self.trained: tuple[int, int] = (int(th), int(tw))
        self.dynamic = dynamic
        self.stride = int(stride) if stride and float(stride).is_integer() else MIN_SIDE
        self.long_side: int | None = None
        self.size: tuple[int, int] = self.trained
        if requested is None:
            return
        if isinstance(requested, int) and not isinstance(requested, bool):
            if not MIN_SIDE <= requested <= MAX_INPUT_SIDE:
                raise EdgeCamError(f"input_size {requested} is too {'small' if requested < MIN_SIDE else 'large'}; "
                                   f"give a long side from {MIN_SIDE} to {MAX_INPUT_SIDE} pixels.")
            self.long_side = requested
            self.size = self._aspect(*self.trained)
        else:
            try:
                h, w = (int(v) for v in requested)  # type: ignore[union-attr]  # bool is refused here too
            except (TypeError, ValueError):
                raise EdgeCamError(f"input_size {requested!r} is not valid; give (height, width) or one "
                                   "number, the long side.") from None
            if min(h, w) < MIN_SIDE or max(h, w) > MAX_INPUT_SIDE:
                raise EdgeCamError(f"input_size {h}x{w} is too {'small' if min(h, w) < MIN_SIDE else 'large'}; give "
                                   f"sides from {MIN_SIDE} to {MAX_INPUT_SIDE} pixels.")
            self.size = (h, w)
        if not dynamic and (self.long_side is not None or self.size != self.trained):
            raise EdgeCamError(f"{where} was exported with a fixed input size of {self.trained[0]}x{self.trained[1]}, "
                               "so input_size cannot change it; re-export it with `edge-cam export` (dynamic "
                               "sizes by default) or leave input_size unset.")

    def _aspect(self, h: int, w: int) -> tuple[int, int]:
        assert self.long_side is not None
        scale = self.long_side / max(h, w)
        side = max(self.stride, MIN_SIDE)
        sh, sw = (max(side, round(n * scale / self.stride) * self.stride) for n in (h, w))
        return sh, sw

    def for_frame(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) a frame of this size is resized to; with a long side, the last one chosen is
        kept as `size`."""
        if self.long_side is not None:
            self.size = self._aspect(height, width)
        return self.size
