"""An image's width and height from its header, before anything is decoded.

A decompression bomb (an 876 KB PNG of 30000x30000 zeros) decodes to gigabytes: the size must be
known before decoding starts. OpenCV has no header-only read (its own check, 2^30 pixels, is far
above what a 4 GB board survives: that PNG took 3.6 GB of RSS and 20 s in `localize`), and Pillow
is no runtime dependency, so the headers of the formats OpenCV decodes are read here: JPEG, PNG,
BMP, TIFF/BigTIFF, WebP, GIF, PNM/PAM/PFM, Sun raster, Radiance HDR, JPEG 2000 and AVIF. A header
this module does not know (or cannot parse) gives None, and OpenCV's own limit still applies.
"""
from __future__ import annotations

import re
import struct

# Markers of JPEG frames that carry the image size (SOF0-SOF15 less DHT, JPG and DAC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NUMBER = re.compile(rb"(?:\s|#[^\n]*\n)*(\d+)")  # a PNM header number, after blanks and comments


def image_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) that the header of an encoded image claims, or None when unknown."""
    head = bytes(data[:64])
    try:
        if head.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            w, h = struct.unpack(">II", head[16:24])
            return w, h
        if head[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", head[6:10])
            return w, h
        if head.startswith(b"BM"):
            return _bmp(head)
        if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
            return _tiff(bytes(data[:1 << 20]))
        if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
            return _webp(head)
        if head[:1] == b"P" and head[1:2] in b"1234567fF":
            return _pnm(head if head[1:2] != b"7" else bytes(data[:4096]))
        if head.startswith(b"\x59\xa6\x6a\x95"):  # Sun raster
            w, h = struct.unpack(">II", head[4:12])
            return w, h
        if head.startswith((b"#?RADIANCE", b"#?RGBE")):
            return _hdr(bytes(data[:4096]))
        if head.startswith(b"\xff\x4f\xff\x51"):  # a JPEG 2000 codestream: its SIZ segment
            xs, ys, x0, y0 = struct.unpack(">IIII", head[8:24])
            return xs - x0, ys - y0
        if head[4:8] == b"jP  " or (head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"mif1")):
            return _boxes(bytes(data[:1 << 20]))
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _jpeg(data: bytes | memoryview) -> tuple[int, int] | None:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length
            i += 2
            continue
        if marker == 0xDA:  # the scan starts before any frame header: none to read
            return None
        length = data[i + 2] << 8 | data[i + 3]
        if marker in _SOF:
            h, w = struct.unpack(">HH", bytes(data[i + 5:i + 9]))
            return w, h
        i += 2 + length
    return None


def _bmp(head: bytes) -> tuple[int, int]:
    (dib,) = struct.unpack("<I", head[14:18])
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        w, h = struct.unpack("<HH", head[18:22])
        return w, h
    w, h = struct.unpack("<ii", head[18:26])
    return abs(w), abs(h)  # a negative height is a top-down bitmap


def _tiff(data: bytes) -> tuple[int, int] | None:
    e = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\0", b"\0+")
    (ifd,) = struct.unpack(e + ("Q" if big else "I"), data[8:16] if big else data[4:8])
    count_fmt, entry, value_at = ("Q", 20, 12) if big else ("H", 12, 8)
    (count,) = struct.unpack(e + count_fmt, data[ifd:ifd + struct.calcsize(count_fmt)])
    first = ifd + struct.calcsize(count_fmt)
    found = {}
    for k in range(min(count, 4096)):
        at = first + k * entry
        tag, kind = struct.unpack(e + "HH", data[at:at + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT, LONG (or LONG8 in BigTIFF)
            fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if fmt is None:
                return None
            (found[tag],) = struct.unpack(e + fmt, data[at + value_at:at + value_at + struct.calcsize(fmt)])
    return (found[256], found[257]) if len(found) == 2 else None


def _webp(head: bytes) -> tuple[int, int] | None:
    kind = head[12:16]
    if kind == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L" and head[20] == 0x2F:
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
    if kind == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _pnm(head: bytes) -> tuple[int, int] | None:
    if head[1:2] == b"7":  # PAM: WIDTH and HEIGHT lines
        w = re.search(rb"\nWIDTH\s+(\d+)", head)
        h = re.search(rb"\nHEIGHT\s+(\d+)", head)
        return (int(w.group(1)), int(h.group(1))) if w and h else None
    first = _NUMBER.match(head, 2)
    second = _NUMBER.match(head, first.end()) if first else None
    return (int(first.group(1)), int(second.group(1))) if first and second else None


def _hdr(head: bytes) -> tuple[int, int] | None:
    m = re.search(rb"\n\n([-+])([YX]) (\d+) ([-+])([YX]) (\d+)", head)
    if not m:
        return None
    first, second = int(m.group(3)), int(m.group(6))
    return (second, first) if m.group(2) == b"Y" else (first, second)


def _boxes(data: bytes) -> tuple[int, int] | None:
    """JP2's 'ihdr' box (height, width) or, in AVIF/HEIF, the largest 'ispe' (width, height)."""
    at = data.find(b"ihdr")
    if at >= 0:
        h, w = struct.unpack(">II", data[at + 4:at + 12])
        return w, h
    sizes = []
    at = data.find(b"ispe")
    while at >= 0:  # version and flags (4 bytes), then width and height
        sizes.append(struct.unpack(">II", data[at + 8:at + 16]))
        at = data.find(b"ispe", at + 4)
    return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None
