"""Small files that claim to be large, written byte by byte (for the hostile-input tests).

Each is a valid file of its format, or a valid header with little behind it: what a
decoder or a loader allocates from the sizes it declares is what the tests are about.
"""

import io
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height):
    """A valid black 1-bit grey PNG: 20000x20000 is 50 KB (and 1.2 GB as RGB)."""
    row = b"\0" + bytes((width + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def gif(screen, palette, frames):
    """A GIF of a global colour table `palette` ([(r, g, b)], a power of 2 entries) and
    `frames`, each ((left, top, width, height), LZW data bytes after the code size 2)."""
    bits = max(len(palette).bit_length() - 2, 0)
    out = [b"GIF89a", struct.pack("<HHBBB", *screen, 0x80 | bits, 0, 0)]
    out.append(bytes(c for colour in palette for c in colour))
    for (left, top, width, height), data in frames:
        out.append(b"\x21\xf9\x04\x00\x0a\x00\x00\x00")  # a graphic control extension
        out.append(b"\x2c" + struct.pack("<HHHHB", left, top, width, height, 0))
        out.append(b"\x02" + bytes([len(data)]) + data + b"\x00")
    return b"".join(out) + b";"


# LZW data (code size 2) of one pixel of colour 0: clear, 0, end.
ONE_PIXEL = b"\x44\x01"


def full_frames_gif(side=3000, count=500):
    """A GIF of `count` side x side frames of one colour: about 8 KB a frame, and giflib
    reads every frame's side^2 pixels before TensorFlow keeps the first (3000x3000 x 300:
    2.3 MB that took 3.2 GB; x 500, 3.9 MB)."""
    frame = Image.new("P", (side, side), 1)
    frame.putpalette([0, 0, 0, 9, 9, 9])
    one = io.BytesIO()
    frame.save(one, "GIF", optimize=False)
    one = one.getvalue()
    # The screen and its colour table, extensions (a label, then sub-blocks), then the
    # image (descriptor, LZW data) up to the trailer.
    start = position = 13 + (3 << (one[10] % 8 + 1) if one[10] & 0x80 else 0)
    while one[position] == 0x21:
        position += 2
        while one[position]:
            position += 1 + one[position]
        position += 1
    extension = b"\x21\xf9\x04\x00\x0a\x00\x00\x00"
    return one[:start] + (extension + one[position:-1]) * count + b";"


def webp_canvas(width, height):
    """A WebP whose VP8X header declares a width x height canvas (and a 1x1 lossless image)."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0"
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    image = b"VP8L" + struct.pack("<I", 6) + b"\x2f\0\0\0\0\0"
    body = b"WEBP" + vp8x + image
    return b"RIFF" + struct.pack("<I", len(body)) + body


def zip_bomb_member(path, members, name, inflated):
    """Writes a zip of `members` ({name: bytes}) in which `name` is its bytes followed by
    `inflated` bytes of spaces before its last byte, deflated (4 MB per GiB)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            if member != name:
                archive.writestr(member, data)
                continue
            info = zipfile.ZipInfo(member)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as f:
                f.write(data[:-1])
                chunk = b" " * 2**24
                for _ in range(inflated // len(chunk)):
                    f.write(chunk)
                f.write(data[-1:])


def npy_header_only(shape, dtype="<f4"):
    """An .npy file's header declaring `shape`, with no data behind it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    )
    return buffer.getvalue()
