"""Unit tests of the image decoder on real photos: corrupt JPEG data refused, EXIF orientation as OpenCV applies it."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from app.core.errors import CorruptImage, TruncatedImage
from app.pipeline.decode import decode_probed, probe

pytestmark = pytest.mark.unit
LIMITS = {"max_bytes": 10_000_000, "max_pixels": 16_000_000}


def decode(data: bytes) -> np.ndarray:
    fmt, _, _ = probe(data, **LIMITS)
    return decode_probed(data, fmt)


def test_jpeg_decodes_to_opencvs_pixels(bus_path: Path) -> None:
    data = bus_path.read_bytes()
    np.testing.assert_array_equal(decode(data), cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_jpeg_padded_with_end_marker_refused(bus_path: Path, keep: float) -> None:
    """OpenCV decodes this with a grey tail; libjpeg's 'premature end of data segment' must be an error."""
    data = bus_path.read_bytes()
    cut = data[: int(len(data) * keep)]
    with pytest.raises(TruncatedImage):
        decode(cut)
    with pytest.raises(CorruptImage, match="premature end"):
        decode(cut + b"\xff\xd9")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_opencv(zidane_path: Path, orientation: int) -> None:
    small = Image.open(zidane_path).reduce(8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=90, exif=exif.tobytes())
    data = buf.getvalue()
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    got = decode(data)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_cmyk_and_grey_jpegs_decode_to_bgr(bus_path: Path) -> None:
    photo = Image.open(bus_path).reduce(4)
    for mode in ("CMYK", "L"):
        buf = io.BytesIO()
        photo.convert(mode).save(buf, format="JPEG", quality=90)
        image = decode(buf.getvalue())
        assert image.shape == (photo.height, photo.width, 3) and image.dtype == np.uint8
        assert 60 < image.mean() < 200
