"""`run --collect DIR`: the frames where the student disagreed with a confident teacher, kept for
the next distillation (`distill --add DIR`).

Those frames are what the student has not learnt: the scene changed, the light, the camera. Each
one is written as DIR/<run>-<stream>-<frame>.jpg (names sort by run, stream and frame: a folder
source reads them in that order) with one line in DIR/collected.jsonl (the file, source, frame,
and both answers). The folder's images count against `budget_mb`, those of earlier runs too: when
the next frame would not fit, collecting stops (one log line) and the count of frames left out is
in `over_budget`; nothing else of the run changes. A full disk or a write error ends the run with
one sentence, as the events file does.
"""
from __future__ import annotations

import json
import logging
import os

import cv2

from ..capture import IMAGE_EXTS
from ..cascade import FrameResult
from ..errors import EdgeCamError
from ..sink import PlainSink

log = logging.getLogger("edge_cam")

LIST = "collected.jsonl"
JPEG_QUALITY = 95  # the student learns from these: keep them close to the camera's frames


class CollectSink(PlainSink):
    def __init__(self, folder: str, budget_mb: float = 500.0):
        if not budget_mb > 0:
            raise EdgeCamError(f"the collection budget must be above 0 MB, not {budget_mb:g}.")
        self.folder, self.budget = folder, int(budget_mb * 1e6)
        try:
            os.makedirs(folder, exist_ok=True)
            self.used = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
                            if os.path.splitext(f)[1].lower() in IMAGE_EXTS)
        except OSError as e:
            raise EdgeCamError(f"cannot collect frames into {folder} ({e.strerror}).") from None
        self.saved = self.over_budget = 0

    def write(self, result: FrameResult) -> None:
        check = result.check
        if check is None or not check.confident or check.agree or result.image is None:
            return
        if self.used >= self.budget:  # cheap: no encoding once the folder is full
            self._skip()
            return
        ok, jpeg = cv2.imencode(".jpg", result.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise EdgeCamError(f"could not encode frame {result.frame} of {result.source} as JPEG.")
        if self.used + len(jpeg) > self.budget:
            self._skip()
            return
        name = f"{(result.run or 'run')[:8]}-{result.stream}-{result.frame:08d}.jpg"
        entry = {"file": name, "source": result.source, "frame": result.frame, "ts": round(result.ts, 4),
                 "run": result.run, "teacher": check.teacher, "student": check.student}
        try:
            with open(os.path.join(self.folder, name), "wb") as f:
                f.write(jpeg.tobytes())
            with open(os.path.join(self.folder, LIST), "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        except OSError as e:
            raise EdgeCamError(f"cannot collect more frames into {self.folder} ({e.strerror}): stopped after "
                               f"{self.saved} frames.") from None
        self.used += len(jpeg)
        self.saved += 1

    def _skip(self) -> None:
        if not self.over_budget:
            log.warning("collect: %s holds %.1f MB of frames, the budget is %.1f MB: no more frames are kept "
                        "(--collect-budget)", self.folder, self.used / 1e6, self.budget / 1e6)
        self.over_budget += 1

    def close(self) -> None:
        pass
