"""Bytes -> BGR image, with the size limits checked on the header before any pixel is decoded.

PIL opens lazily: `Image.open` reads only the header, which gives the format and the pixel count, so a
decompression bomb is refused before it costs memory. A cheap structural check catches truncated files
(cv2 would otherwise decode them with a grey tail), then one real decode: JPEG through libjpeg-turbo
(simplejpeg) in strict mode, which refuses corrupt scan data that cv2 fills with grey (a truncated file
padded with an end marker); other formats through OpenCV.

Pixel bombs: a few hundred bytes of lossless WebP, RLE BMP or 1-bit PNG can declare 16 MP, which the pipeline holds
as 48 MB of BGR. `probe` bounds the decoded pixels per uploaded byte of every format (`PIXELS_PER_BYTE`, with each
format's reason) before any pixel is decoded; images of at most `FREE_PIXELS` cost what any photo costs
and are not bounded. Extreme aspect ratios, which no detector input can hold, are refused on the header too.
"""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Callable

import cv2
import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from app.core import errors
from app.core.errors import CorruptImage, EmptyBody, NotAnImage, TooManyBytes, TooManyPixels, TruncatedImage

SUPPORTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp"}
# Decoded pixels per uploaded byte that a genuine image of each format stays under (beyond: a pixel bomb, 413, or a
# JPEG header that lies, 400). One policy bound (512 pixels, 1.5 KB of BGR, per byte) where the format sets none:
# - JPEG: entropy-coded 8x8 blocks: even a uniform image needs a byte per ~64 pixels (measured: 62-64 at any
#   quality); 8x that is a header that lies about the size (a pixel-amplification upload).
# - PNG: deflate expands at most 1032:1, so an 8-bit RGB PNG cannot pass 344 pixels per byte; only near-uniform
#   grey or 1-8 bit palette images can (a 1-bit PNG reaches 8256), and 512 refuses those of many pixels.
# - WEBP: lossless VP8L has no floor (a one-symbol Huffman code costs 0 bits per pixel: 676 bytes hold 16 MP);
#   lossy VP8 photos take 5-50 pixels per byte.
# - BMP: uncompressed rows hold at least 1 bit per pixel (8 pixels per byte, a structural bound); RLE4/RLE8 have
#   none (delta and end-of-bitmap escapes skip any number of pixels: 1 KB holds 16 MP).
PIXELS_PER_BYTE = {"JPEG": 512, "PNG": 512, "WEBP": 512, "BMP": 512}
BMP_UNCOMPRESSED_PIXELS_PER_BYTE = 8
FREE_PIXELS = 1 << 20  # up to ~1 MP (bus.jpg is 0.87 MP) an image costs what any photo does, whatever its bytes
# The detector letterboxes the longer side to its input (640 px): beyond 32:1 the shorter side is under 20 px, no
# person fits in it, and from 640:1 on it rounds to no pixel at all.
MAX_ASPECT_RATIO = 32
EXIF_ORIENTATION = 0x0112
SUPPORTED_MEDIA_TYPES = frozenset(SUPPORTED_FORMATS.values()) | {"image/jpg", "image/x-ms-bmp"}


def _pil_open() -> Callable[..., Image.Image]:
    """PIL's own Image.open: Ultralytics replaces it with a wrapper that, on an unidentified file, tries to
    install and import pi-heif (a network call, then ModuleNotFoundError here); bypass that wrapper."""
    opener = Image.open
    if getattr(opener, "__module__", "") != Image.__name__:
        opener = getattr(sys.modules.get("ultralytics.utils.patches"), "_image_open", opener)
    return opener


def probe(data: bytes, max_bytes: int, max_pixels: int) -> tuple[str, int, int]:
    """Check size, format and pixel count from the header only; returns (format, width, height)."""
    if not data:
        raise EmptyBody("the request carries no image bytes")
    if len(data) > max_bytes:
        raise TooManyBytes(f"image of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _pil_open()(io.BytesIO(data)) as im:
                fmt, (width, height) = im.format or "", im.size
                bmp_compression = int(im.info.get("compression", 0)) if fmt == "BMP" else 0
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"image header declares too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise NotAnImage("the bytes are not a recognised image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"corrupt image header: {exc}") from exc
    if fmt not in SUPPORTED_FORMATS:
        raise errors.UnsupportedMediaType(f"image format {fmt or 'unknown'} not supported; send one of "
                                   f"{', '.join(sorted(SUPPORTED_FORMATS.values()))}")
    if width <= 0 or height <= 0:
        raise CorruptImage(f"image header declares a size of {width}x{height}")
    if width * height > max_pixels:
        raise TooManyPixels(f"image of {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise errors.UnprocessableImage(f"image of {width}x{height} pixels: its aspect ratio exceeds "
                                        f"{MAX_ASPECT_RATIO}:1")
    check_amplification(fmt, width, height, len(data), bmp_compression)
    return fmt, width, height


def check_amplification(fmt: str, width: int, height: int, size: int, bmp_compression: int = 0) -> None:
    """Refuse an image whose declared pixels its bytes cannot (JPEG, uncompressed BMP: 400) or should not (a pixel
    bomb of a lossless format: 413) hold, by the bounds of `PIXELS_PER_BYTE`."""
    pixels = width * height
    if fmt == "BMP" and bmp_compression in (0, 3, 6) and pixels > BMP_UNCOMPRESSED_PIXELS_PER_BYTE * size:
        raise CorruptImage(f"uncompressed BMP of {size} bytes cannot hold {width}x{height} pixels")
    if pixels <= FREE_PIXELS or pixels <= PIXELS_PER_BYTE[fmt] * size:
        return
    if fmt == "JPEG":
        raise CorruptImage(f"JPEG of {size} bytes cannot hold {width}x{height} pixels")
    raise TooManyPixels(f"{fmt} image of {size} bytes declares {width}x{height} pixels, over "
                        f"{PIXELS_PER_BYTE[fmt]} decoded pixels per byte (a pixel bomb)")


def _is_complete(data: bytes, fmt: str) -> bool:
    """Whether the file reaches its end marker / declared length (JPEG EOI, PNG IEND, RIFF and BMP sizes)."""
    if fmt == "JPEG":
        return b"\xff\xd9" in data[-4096:]
    if fmt == "PNG":
        return b"IEND" in data[-64:]
    if fmt == "WEBP":
        return len(data) >= int.from_bytes(data[4:8], "little") + 8
    if fmt == "BMP":
        declared = int.from_bytes(data[2:6], "little")
        return declared == 0 or len(data) >= declared
    return True


def _exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8; 1 = as stored) of an image's header."""
    try:
        with _pil_open()(io.BytesIO(data)) as im:
            return int(im.getexif().get(EXIF_ORIENTATION, 1))
    except (OSError, SyntaxError, ValueError, TypeError):
        return 1


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright as the EXIF orientation says (what cv2.imdecode and viewers do)."""
    if orientation in (5, 6, 7, 8):  # 5 transpose, 6 rotate 90 cw, 7 transverse, 8 rotate 90 ccw
        image = np.rot90(image, 1 if orientation in (5, 8) else -1)
    if orientation in (3, 4, 5, 7):
        image = image[::-1]
    if orientation in (2, 3):
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    """Strict libjpeg-turbo decode (any libjpeg warning, e.g. premature end of data, is an error), upright."""
    _, _, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    if colorspace not in ("Gray", "YCbCr", "RGB"):  # CMYK/YCCK: turbojpeg cannot give BGR, OpenCV can
        return None
    try:
        image = simplejpeg.decode_jpeg(data, colorspace="BGR", strict=True)
    except ValueError as exc:
        raise CorruptImage(f"JPEG image is corrupt: {exc}") from exc
    return _apply_orientation(image, _exif_orientation(data))


def decode_probed(data: bytes, fmt: str) -> np.ndarray:
    """Bytes whose header `probe` has checked (format `fmt`) -> BGR uint8 (H, W, 3); raises `app.core.errors` types."""
    if not _is_complete(data, fmt):
        raise TruncatedImage(f"{fmt} image is truncated ({len(data)} bytes)")
    if fmt == "JPEG" and (image := _decode_jpeg(data)) is not None:
        return image
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV's own text (source paths, assertions) is not for clients
        image = None
    if image is None or image.size == 0:
        raise CorruptImage(f"{fmt} image could not be decoded")
    return image


def check_media_type(content_type: str | None) -> str:
    """The bare media type of a raw-body request; 415 unless it is one of the supported image types."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in SUPPORTED_MEDIA_TYPES:
        kinds = ", ".join(sorted(SUPPORTED_FORMATS.values()))
        raise errors.UnsupportedMediaType(f"Content-Type {media or '(none)'!r} not supported; send multipart/form-data "
                                          f"with a field 'image' or a raw body of {kinds}")
    return media
