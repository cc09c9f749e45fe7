"""An image file's size read from its header, before TensorFlow's decoder allocates it.

A PNG of 20000x20000 pixels of one colour is 48 KB and decodes to 1.2 GB (and several
times that as float32): every decode in the package first reads the width and height the
file declares (PNG's IHDR, JPEG's frame header, GIF's screen and first image descriptor,
BMP's info header, WebP's VP8, VP8L or VP8X header) and refuses an image of more than
`max_pixels()` pixels with an InvalidArgumentError that says so, before any pixel is
decoded. In TensorFlow ops only, so the check runs eagerly, inside `tf.data` and inside an
exported SavedModel's serving signature alike.

The limit's default is Pillow's decompression-bomb limit, 89,478,485 pixels (2^30 bytes of
4-byte RGBA pixels over 3): every image Pillow opens without a warning is read, the largest
phone photos included (64-megapixel sensors). An image at the limit takes about 2 GB to
decode, crop and resize. The tools take `--max_image_pixels`, which sets it
(`set_max_pixels`); a SavedModel keeps the limit it was exported with.

Animated GIFs and WebPs are cut to their first frame before decoding (`first_frame`), the
frame the package reads of them: TensorFlow's GIF decoder (giflib's DGifSlurp) reads every
frame's pixels first (a 2.3 MB GIF of 300 3000x3000 frames took 3.2 GB), its WebP decoder
every frame of an animation, and it reads an animated WebP only when flagged as having
alpha (asked for the file's own channels otherwise, it corrupts the process's memory).
"""

import tensorflow as tf

from keras_alexnet.data import image_files

# Pillow's Image.MAX_IMAGE_PIXELS (its DecompressionBombWarning).
MAX_PIXELS = 89_478_485
_max_pixels = [MAX_PIXELS]

PALETTE_BMP = image_files.PALETTE_BMP
JPEG_XL = "JPEG XL image (not read: its size is not checked before decoding)"

_BYTES = [bytes([i]) for i in range(256)]


def set_max_pixels(pixels):
    """Sets the largest image (width x height) that the decoders read from now on."""
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise ValueError(f"max_image_pixels must be a positive integer. Received: {pixels!r}")
    _max_pixels[0] = pixels


def max_pixels():
    """The largest image (width x height) that the decoders read: `MAX_PIXELS` unless set."""
    return _max_pixels[0]


def too_large_message(limit):
    """The words (before the size) of the refusal of an image over `limit` pixels."""
    return f"image over the limit of {limit:,} pixels (--max_image_pixels)"


def _length(encoded):
    return tf.cast(tf.strings.length(encoded, unit="BYTE"), tf.int64)


def header(encoded, length, offset=0):
    """`length` bytes of a string from `offset`, as int64 [length], zero-padded."""
    if not isinstance(offset, int) or offset:
        end = _length(encoded)
        offset = tf.minimum(tf.cast(offset, tf.int64), end)
        head = tf.strings.substr(encoded, offset, tf.constant(length, tf.int64))
    else:
        head = tf.strings.substr(encoded, 0, length)
    head = tf.strings.substr(tf.strings.join([head, tf.constant(bytes(length))]), 0, length)
    return tf.ensure_shape(tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64), [length])


def little_endian(values):
    """The unsigned integer of 2, 3 or 4 little-endian bytes (int64: it cannot wrap)."""
    weights = tf.constant([1, 1 << 8, 1 << 16, 1 << 24][: values.shape[0]], tf.int64)
    return tf.reduce_sum(values * weights)


def _big_endian(values):
    return little_endian(values[::-1])


def _signed32(value):
    return tf.where(value >= 1 << 31, value - (1 << 32), value)


def _starts(head, offset, text):
    return tf.reduce_all(head[offset : offset + len(text)] == list(text))


def _webp_size(head):
    """(width, height) of a still or animated WebP's first header (VP8, VP8L or VP8X)."""
    chunk = head[12:16]
    bits = little_endian(head[21:25])
    return tf.case(
        [
            (
                tf.reduce_all(chunk == list(b"VP8 ")),
                lambda: (little_endian(head[26:28]) % 16384, little_endian(head[28:30]) % 16384),
            ),
            (
                tf.reduce_all(chunk == list(b"VP8L")),
                lambda: (bits % 16384 + 1, bits // 16384 % 16384 + 1),
            ),
            (
                tf.reduce_all(chunk == list(b"VP8X")),
                lambda: (little_endian(head[24:27]) + 1, little_endian(head[27:30]) + 1),
            ),
        ],
        default=lambda: (tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
    )


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def declared_size(encoded):
    """(width, height), int64, that an image file's header declares; (0, 0) for a file
    of no format TensorFlow reads (its decoder then says what is wrong).

    A GIF's size is the larger of its screen and its first image (giflib allocates the
    image as its descriptor says); a JPEG's is read by `tf.image.extract_jpeg_shape`, which
    reads the frame header only.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    head = header(encoded, 32)
    zero = tf.constant(0, tf.int64)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)
        return shape[1], shape[0]

    def gif():
        frame = header(encoded, 10, _gif_first_image(encoded, head))
        width = tf.maximum(little_endian(head[6:8]), little_endian(frame[5:7]))
        return width, tf.maximum(little_endian(head[8:10]), little_endian(frame[7:9]))

    return tf.case(
        [
            (tf.io.is_jpeg(encoded), jpeg),
            (
                _starts(head, 0, b"\x89PNG"),
                lambda: (_big_endian(head[16:20]), _big_endian(head[20:24])),
            ),
            (_starts(head, 0, b"GIF8"), gif),
            (
                _starts(head, 0, b"BM"),
                lambda: (
                    tf.abs(_signed32(little_endian(head[18:22]))),
                    tf.abs(_signed32(little_endian(head[22:26]))),
                ),
            ),
            (_starts(head, 0, b"RIFF") & _starts(head, 8, b"WEBP"), lambda: _webp_size(head)),
        ],
        default=lambda: (zero, zero),
    )


def size_check(encoded, limit=None):
    """An op that fails with an InvalidArgumentError when the image declares more than
    `limit` (default `max_pixels()`) pixels: run it before decoding.

    A JPEG XL file, which TensorFlow's `decode_image` also reads, is refused: its size is
    not read here (nor is it a format the package reads: `image_files`).
    """
    head = header(encoded, 12)
    jpeg_xl = _starts(head, 0, b"\xff\x0a") | _starts(head, 0, b"\0\0\0\x0cJXL \r\n\x87\n")
    known = tf.debugging.Assert(~jpeg_xl, [JPEG_XL])
    width, height = declared_size(encoded)
    with tf.control_dependencies([known]):
        return pixels_check(width, height, limit)


def pixels_check(width, height, limit=None):
    """An op that fails with an InvalidArgumentError, naming the size, when width x height
    is over `limit` (default `max_pixels()`)."""
    limit = max_pixels() if limit is None else limit
    width, height = tf.cast(width, tf.int64), tf.cast(height, tf.int64)
    message = tf.strings.format(
        too_large_message(limit).replace("{", "{{").replace("}", "}}") + ": {}x{}",
        (width, height),
    )
    return tf.debugging.Assert(width * height <= limit, [message])


def _loop(more, step, position):
    """`position = step(position)` while `more(position)`: a walk over a file's blocks."""
    return tf.while_loop(more, lambda p: (step(p),), (position,), parallel_iterations=1)[0]


def _byte_at(encoded, position):
    return header(encoded, 1, position)[0]


def _sub_blocks_end(encoded, position):
    """Where a GIF's sequence of data sub-blocks starting at `position` ends (after its
    terminator), or past the end of the file."""
    length = _length(encoded)

    def step(position):
        return position + 1 + _byte_at(encoded, position)

    def more(position):
        return (position < length) & (_byte_at(encoded, position) > 0)

    end = _loop(more, step, position)
    return end + 1


def _gif_first_image(encoded, head):
    """Where a GIF's first image descriptor starts (past the end of the file if none):
    the blocks before it are extensions, each a label and data sub-blocks."""
    length = _length(encoded)
    packed = head[10]
    table = tf.where(
        packed >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), packed % 8), 0
    )

    def more(position):
        return (position < length) & (_byte_at(encoded, position) == 0x21)

    def step(position):
        return _sub_blocks_end(encoded, position + 2)

    return _loop(more, step, 13 + table)


def _gif_first_frame(encoded):
    """A GIF cut after its first image, with its trailer: what TensorFlow decodes as the
    first frame, without the others."""
    head = header(encoded, 16)
    start = _gif_first_image(encoded, head)
    descriptor = header(encoded, 10, start)
    packed = descriptor[9]
    table = tf.where(
        packed >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), packed % 8), 0
    )
    # The image descriptor, its colour table, the LZW code size, then the data sub-blocks.
    end = _sub_blocks_end(encoded, start + 10 + table + 1)
    return tf.strings.join([tf.strings.substr(encoded, tf.constant(0, tf.int64), end), b";"])


def _le32_string(value):
    bytes_ = tf.constant(_BYTES)
    return tf.strings.reduce_join(
        tf.gather(bytes_, tf.stack([value // (1 << (8 * i)) % 256 for i in range(4)]))
    )


def _webp_first_frame(encoded):
    """An animated WebP cut after its first ANMF chunk, its RIFF size set to match and its
    VP8X alpha flag set: TensorFlow's decoder reads animations as RGBA only, and refuses
    (or, asked for the file's own channels, corrupts memory on) one not flagged so."""
    length = _length(encoded)

    def chunk_at(position):
        return header(encoded, 8, position)

    def more(position):
        return (position + 8 <= length) & ~_starts(chunk_at(position), 0, b"ANMF")

    def step(position):
        size = little_endian(chunk_at(position)[4:8])
        return position + 8 + size + size % 2

    start = _loop(more, step, tf.constant(12, tf.int64))
    size = little_endian(chunk_at(start)[4:8])
    end = tf.maximum(tf.minimum(start + 8 + size + size % 2, length), 21)
    flags = _byte_at(encoded, 20)
    bytes_ = tf.constant(_BYTES)
    return tf.strings.join(
        [
            b"RIFF",
            _le32_string(end - 8),
            tf.strings.substr(encoded, tf.constant(8, tf.int64), tf.constant(12, tf.int64)),
            tf.gather(bytes_, tf.bitwise.bitwise_or(flags, 0x10)),
            tf.strings.substr(encoded, tf.constant(21, tf.int64), end - 21),
        ]
    )


def is_animated_webp(encoded):
    head = header(encoded, 21)
    return (
        _starts(head, 0, b"RIFF")
        & _starts(head, 8, b"WEBP")
        & _starts(head, 12, b"VP8X")
        & (tf.bitwise.bitwise_and(head[20], 2) > 0)
    )


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def first_frame(encoded):
    """A GIF or animated WebP cut to its first frame; any other file as it is."""
    return tf.case(
        [
            (tf.strings.substr(encoded, 0, 4) == b"GIF8", lambda: _gif_first_frame(encoded)),
            (is_animated_webp(encoded), lambda: _webp_first_frame(encoded)),
        ],
        default=lambda: encoded,
    )


def palette_bmp(encoded):
    """Whether a file is an 8-bit BMP with a colour palette, whose palette indices
    TensorFlow's decoder returns as grey levels."""
    head = header(encoded, 2048)
    is_bmp = _starts(head, 0, b"BM") & (little_endian(head[28:30]) == 8)

    def coloured():
        # Up to 256 BGR0 entries between the headers and the pixels.
        palette_start = 14 + little_endian(head[14:18])
        entries = tf.clip_by_value((little_endian(head[10:14]) - palette_start) // 4, 0, 256)
        index = tf.range(256, dtype=tf.int64)
        positions = tf.minimum(
            palette_start + 4 * index[:, None] + tf.range(3, dtype=tf.int64), 2047
        )
        unused = index[:, None] >= entries
        return ~tf.reduce_all((tf.gather(head, positions) == index[:, None]) | unused)

    return tf.cond(is_bmp, coloured, lambda: tf.constant(False))
