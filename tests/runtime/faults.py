"""Test helpers for the fault matrix: a corpus of bad (and awkward but good) images generated at
test time, and small file systems that really fill up or are really read-only."""
from __future__ import annotations

import contextlib
import io
import os
import pathlib
import struct
import subprocess
import uuid
import zlib

import cv2
import numpy as np


def one_sentence(proc) -> str:
    """The one `edge-cam: ...` line of a command that refused its input: exit 2, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("edge-cam:")]
    return line


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def forged_png(width: int = 50000, height: int = 50000) -> bytes:
    """A 68-byte PNG whose header claims width x height pixels: over OpenCV's 2^30-pixel limit,
    imdecode raises cv2.error instead of returning None."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 8))
            + _chunk(b"IEND", b""))


def bomb_png(path, side: int = 30000) -> int:
    """A decompression bomb: a PNG of side x side grey zeros, 876 KB for 30000 (900 MB decoded, 3.6
    GB of RSS through localize before the header check), written row by row without holding it.
    Returns its size in bytes."""
    z = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte 0, then the row
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    pathlib.Path(path).write_bytes(data)
    return len(data)


def cmyk_jpeg(width: int = 64, height: int = 48) -> bytes | None:
    """A CMYK JPEG (as print workflows write them), or None without Pillow (OpenCV cannot write one)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    buf = io.BytesIO()
    Image.new("CMYK", (width, height), (0, 128, 255, 0)).save(buf, "JPEG")
    return buf.getvalue()


# The log-injection name: a newline and a terminal escape sequence in a file name.
EVIL_NAME = "i_evil\n\x1b[31mFAKE LOG LINE.jpg"


def write_corpus(folder: pathlib.Path, frame: np.ndarray) -> tuple[list[str], dict[str, tuple]]:
    """Bad and good images in `folder`, named so that sorted order interleaves them and ends on a
    good one. Returns (the bad names, {good name: expected (height, width) or shape}).
    """
    good_jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
    bad = {
        "a_forged_50000x50000.png": forged_png(),
        "c_truncated.jpg": good_jpeg[:200],  # cut before any pixel data
        "e_empty.jpg": b"",
        "g_garbage.png": b"\x89PNG\r\n\x1a\n" + os.urandom(300),
        EVIL_NAME: b"\xff\xd8\xff\xe0 not a jpeg at all" * 10,
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    good: dict[str, tuple] = {}
    cv2.imwrite(str(folder / "b_colour.jpg"), frame)
    good["b_colour.jpg"] = frame.shape
    deep = frame.astype(np.uint16) * 257
    cv2.imwrite(str(folder / "d_16bit.png"), deep)
    good["d_16bit.png"] = deep.shape
    cmyk = cmyk_jpeg()
    if cmyk is not None:
        (folder / "f_cmyk.jpg").write_bytes(cmyk)
        good["f_cmyk.jpg"] = (48, 64, 3)
    cv2.imwrite(str(folder / "h_1x1.png"), frame[:1, :1])
    good["h_1x1.png"] = (1, 1, 3)
    huge = cv2.resize(frame, (6000, 4500), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(folder / "j_huge.jpg"), huge, [cv2.IMWRITE_JPEG_QUALITY, 50])
    good["j_huge.jpg"] = huge.shape
    cv2.imwrite(str(folder / "z_last_good.jpg"), frame)
    good["z_last_good.jpg"] = frame.shape
    return sorted(bad), good


@contextlib.contextmanager
def mounted_tmpfs(where: pathlib.Path, size: str = "256k", read_only: bool = False):
    """A real tmpfs of `size` at `where` (root only): a disk that fills, or a read-only one. Yields
    None, without mounting, where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    try:
        ok = os.geteuid() == 0 and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, f"edge-cam-test-{uuid.uuid4().hex[:6]}", str(where)],
            capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    try:
        yield where if ok else None
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


@contextlib.contextmanager
def read_only_folder(where: pathlib.Path):
    """A folder nobody may write into: a read-only tmpfs for root (who ignores permission bits),
    mode 0555 for anyone else. Yields None where neither works."""
    if os.geteuid() == 0:
        with mounted_tmpfs(where, "64k", read_only=True) as mounted:
            yield mounted
        return
    where.mkdir(parents=True, exist_ok=True)
    where.chmod(0o555)
    try:
        yield where
    finally:
        where.chmod(0o755)
