"""Image files of the kinds found in real folders, written with Pillow (for the tests).

`write_corpus(folder)` writes one file per kind and returns, for each file name, what the
package must do with it:
- READ: the file is read, to the pixels `PIL.Image.open(f).convert("RGB")` gives (exactly
  for lossless formats).
- SCAN: the scan before training refuses it, with a reason containing the given words.
- DECODE: the scan passes it and TensorFlow's decoder fails on it: with
  on_bad_image=skip it is found by decoding and left out.
"""

import io
import os

import numpy as np
from PIL import Image

READ, SCAN, DECODE = "read", "scan", "decode"


def _rgb(seed, height=40, width=52):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BILINEAR)


def _rgba(seed):
    image = _rgb(seed).convert("RGBA")
    alpha = np.random.default_rng(seed + 1).integers(0, 256, image.size[::-1], dtype=np.uint8)
    image.putalpha(Image.fromarray(alpha))
    return image


def _bytes(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _gif_without_colour_map():
    # A GIF89a with neither a global nor a local colour table: one 1x1 image, LZW data for
    # a single pixel of index 0.
    screen = b"GIF89a" + (1).to_bytes(2, "little") * 2 + b"\x00\x00\x00"
    image = b"\x2c" + bytes(4) + (1).to_bytes(2, "little") * 2 + b"\x00"
    return screen + image + b"\x02\x02\x44\x01\x00" + b"\x3b"


def corpus():
    """{file name: (bytes, expected outcome, words of the reason for SCAN)}."""
    jpeg = _bytes(_rgb(1), "JPEG", quality=95)
    png = _bytes(_rgb(2), "PNG")
    gif = _bytes(_rgb(3).convert("P"), "GIF")
    frames = [_rgb(s).convert("P") for s in (4, 5, 6)]
    cases = {
        "baseline.jpg": (jpeg, READ),
        "progressive.jpg": (_bytes(_rgb(7), "JPEG", progressive=True), READ),
        "cmyk.jpg": (_bytes(_rgb(8).convert("CMYK"), "JPEG"), READ),
        "grey.jpg": (_bytes(_rgb(9).convert("L"), "JPEG"), READ),
        "exif.jpg": (_bytes(_rgb(10), "JPEG", exif=_orientation_exif()), READ),
        # Cameras and phones write data after the end-of-image marker.
        "trailing_data.jpg": (jpeg + np.random.default_rng(0).bytes(5000), READ),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], SCAN, "truncated JPEG"),
        "rgb.png": (png, READ),
        "rgba.png": (_bytes(_rgba(11), "PNG"), READ),
        "la.png": (_bytes(_rgba(12).convert("LA"), "PNG"), READ),
        "grey16.png": (_bytes(_grey16(13), "PNG"), READ),
        "palette.png": (_bytes(_rgb(14).convert("P"), "PNG"), READ),
        "palette_transparent.png": (_bytes(_rgb(15).convert("P"), "PNG", transparency=0), READ),
        "apng.png": (_bytes(_rgb(16), "PNG", save_all=True, append_images=[_rgb(17)]), READ),
        "truncated.png": (png[: len(png) // 2], SCAN, "truncated PNG"),
        "damaged_data.png": (_damaged_png(png), DECODE),
        "plain.gif": (gif, READ),
        "transparent.gif": (_bytes(_rgb(18).convert("P"), "GIF", transparency=0), READ),
        "animated.gif": (
            _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:]),
            READ,
        ),
        "broken_data.gif": (_broken_gif(gif), DECODE),
        "no_colour_map.gif": (_gif_without_colour_map(), DECODE),
        "lossy.webp": (_bytes(_rgb(19), "WEBP", quality=90), READ),
        "lossless.webp": (_bytes(_rgb(20), "WEBP", lossless=True), READ),
        "alpha.webp": (_bytes(_rgba(21), "WEBP", lossless=True), READ),
        "animated.webp": (
            _bytes(_rgb(22), "WEBP", save_all=True, append_images=[_rgb(23)]),
            READ,
        ),
        "rgb.bmp": (_bytes(_rgb(24), "BMP"), READ),
        "grey.bmp": (_bytes(_rgb(25).convert("L"), "BMP"), READ),
        "rgba.bmp": (_bytes(_rgba(26), "BMP"), READ),
        "palette.bmp": (_bytes(_rgb(27).convert("P"), "BMP"), SCAN, "colour palette"),
        "rle.bmp": (_rle_bmp(), SCAN, "BMP that TensorFlow cannot read"),
        "one_bit.bmp": (_bytes(_rgb(29).convert("1"), "BMP"), SCAN, "1-bit"),
        "empty.jpg": (b"", SCAN, "empty file"),
        "text.png": (b"<html>not an image</html>", SCAN, "not a JPEG"),
    }
    return {
        name: (case[0], case[1], case[2] if len(case) > 2 else "") for name, case in cases.items()
    }


def _grey16(seed):
    grey = np.asarray(_rgb(seed).convert("L"), np.uint16)
    return Image.fromarray(grey * 257 + np.uint16(seed))  # mode I;16


def _orientation_exif():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees; TensorFlow, like PIL's plain open, ignores it
    return exif


def _damaged_png(png):
    data = bytearray(png)
    start = data.index(b"IDAT") + 8
    data[start : start + 40] = bytes(range(40))
    return bytes(data)


def _broken_gif(gif):
    # The image data cut short, the trailer kept: the scan sees a whole file.
    return gif[: len(gif) // 2] + b"\x00\x3b"


def _rle_bmp():
    # An 8-bit run-length encoded BMP (compression 1): 2x2 pixels of palette index 1.
    palette = b"\x00\x00\x00\x00" + b"\xff\x00\x00\x00" + bytes(4 * 254)
    pixels = b"\x02\x01\x00\x00" * 2 + b"\x00\x01"
    header_size, offset = 40, 14 + 40 + len(palette)
    info = (
        header_size.to_bytes(4, "little")
        + (2).to_bytes(4, "little")
        + (2).to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + (8).to_bytes(2, "little")
        + (1).to_bytes(4, "little")
        + len(pixels).to_bytes(4, "little")
        + bytes(16)
    )
    size = offset + len(pixels)
    return (
        b"BM"
        + size.to_bytes(4, "little")
        + bytes(4)
        + offset.to_bytes(4, "little")
        + info
        + palette
        + pixels
    )


def write_corpus(folder):
    """Writes `corpus()` into folder; returns {path: (outcome, reason words)}."""
    os.makedirs(folder, exist_ok=True)
    expected = {}
    for name, (data, outcome, words) in corpus().items():
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(data)
        expected[path] = (outcome, words)
    return expected


def pil_rgb(path):
    """The file's first frame as uint8 RGB, as PIL reads it (the reference)."""
    with Image.open(path) as image:
        if image.mode.startswith("I;16"):
            # PIL clips 16-bit values to 255; decoders keep the high byte.
            grey = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
            return np.repeat(grey[..., None], 3, axis=-1)
        return np.asarray(image.convert("RGB"))
