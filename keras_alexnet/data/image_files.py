"""Cheap checks of image files: is a file one that TensorFlow's decoders read?

`image_file_problem` reads a file's header and a few bytes more, not its pixels, so every file
of a folder can be checked before training: a bad file is left out (or reported) instead of
failing a training step later.
"""

import os

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

# Segment markers that carry no length field.
_JPEG_STANDALONE = {0x01} | set(range(0xD0, 0xD8))
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_TAIL = 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The reason for the kind of file that TensorFlow misreads; the decoders
# (`preprocessing.decode_other`) refuse it with the same words. Without apostrophes:
# TensorFlow escapes them in an assertion's message.
PALETTE_BMP = "8-bit BMP with a colour palette (the TensorFlow decoder reads it as grey levels)"


def _jpeg_problem(f, size):
    """Walks the JPEG's marker segments up to the start of scan and looks for the end marker.

    Reads a few bytes per segment plus the last KB (the rest of the file only when the last
    KB has no end marker).
    """
    position, seen_frame = 2, False
    while True:
        f.seek(position)
        header = f.read(4)
        if len(header) < 2 or header[0] != 0xFF:
            return "corrupt JPEG (broken marker segments)"
        marker = header[1]
        if marker == 0xFF:  # Fill byte.
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if marker == 0xD9 or len(header) < 4:
            return "corrupt JPEG (ends before the image data)"
        length = int.from_bytes(header[2:4], "big")
        if length < 2:
            return "corrupt JPEG (broken marker segments)"
        if marker in _JPEG_SOF:
            seen_frame = True
        if marker == 0xDA:
            if not seen_frame:
                return "corrupt JPEG (no frame header)"
            break
        position += 2 + length
    f.seek(max(size - _JPEG_TAIL, position))
    if b"\xff\xd9" in f.read():
        return None
    # Cameras and phones often write data after the end-of-image marker (a second preview,
    # maker notes): such a file is whole. The rest of the file is searched only when the
    # last KB has no marker. Inside the image data every FF byte is followed by 00 or a
    # restart marker, so an FF D9 after the start of scan is the end-of-image marker.
    f.seek(position)
    tail = b""
    while chunk := f.read(1 << 20):
        if b"\xff\xd9" in tail[-1:] + chunk:
            return None
        tail = chunk
    return "truncated JPEG (no end-of-image marker)"


def _webp_problem(head, size):
    declared = int.from_bytes(head[4:8], "little") + 8
    if size < declared:
        return "truncated WebP (shorter than its header)"
    return None


def _bmp_problem(f, head, size):
    """TensorFlow reads uncompressed 8, 24 and 32-bit BMPs whose size is exactly header +
    rows (a single byte more or less is refused). It reads 8-bit values as grey levels,
    ignoring the palette: only a grey palette gives the right colours."""
    if len(head) < 34:
        return "truncated BMP (no header)"
    offset = int.from_bytes(head[10:14], "little")
    header_end = 14 + int.from_bytes(head[14:18], "little")
    width = int.from_bytes(head[18:22], "little", signed=True)
    height = int.from_bytes(head[22:26], "little", signed=True)
    bits = int.from_bytes(head[28:30], "little")
    compression = int.from_bytes(head[30:34], "little")
    if bits not in (8, 24, 32) or width <= 0 or height == 0 or compression not in (0, 3):
        return f"BMP that TensorFlow cannot read ({bits}-bit, {width}x{height}" + (
            ", run-length encoded)" if compression in (1, 2) else ")"
        )
    expected = offset + (bits * width + 31) // 32 * 4 * abs(height)
    if size != expected:
        return f"corrupt BMP ({size} bytes where its header implies {expected})"
    if bits == 8:
        f.seek(header_end)
        palette = np.frombuffer(f.read(max(offset - header_end, 0)), np.uint8)
        palette = palette[: palette.size // 4 * 4].reshape(-1, 4)[:, :3]
        grey = np.repeat(np.arange(len(palette), dtype=np.uint8)[:, None], 3, axis=1)
        if len(palette) > 256 or not np.array_equal(palette, grey):
            return PALETTE_BMP
    return None


def image_file_problem(path):
    """A cheap check of one image file: what is wrong with it, or None.

    The format is read from the file's first bytes, not its name. JPEG: start marker,
    well-formed segments up to the image data, an end-of-image marker (FFD9) after them
    (usually in the last KB; data after it is allowed).
    PNG: signature, IHDR first, IEND at the end. BMP: a bit depth TensorFlow reads, the
    size its header implies, no colour palette. GIF: the trailer byte at the end. WebP:
    the file at least as long as its RIFF size. Anything else is "not an
    image". Corrupt compressed data inside an otherwise well-formed file is not found.

    Args:
        path: file path.

    Returns:
        None for a usable file, else a short reason.
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file"
        with open(path, "rb") as f:
            head = f.read(64)
            if head.startswith(b"\xff\xd8"):
                return _jpeg_problem(f, size)
            if head.startswith(_PNG_SIGNATURE):
                if head[12:16] != b"IHDR":
                    return "corrupt PNG (no IHDR chunk)"
                f.seek(max(size - 64, 0))
                return None if b"IEND" in f.read() else "truncated PNG (no IEND chunk)"
            if head.startswith(b"BM"):
                return _bmp_problem(f, head, size)
            if head.startswith((b"GIF87a", b"GIF89a")):
                f.seek(max(size - 16, 0))
                return None if b";" in f.read() else "truncated GIF (no trailer)"
            if head.startswith(b"RIFF") and head[8:12] == b"WEBP" and len(head) > 20:
                return _webp_problem(head, size)
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    return "not a JPEG, PNG, BMP, GIF or WebP image"
