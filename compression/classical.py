"""Classical codecs (JPEG, WebP, AVIF, HEIC, JPEG XL) at a matched bit rate.

The paper compares its GAN codec with classical codecs at the same number
of bits per pixel.  :func:`encode_at_bpp` searches a codec's quality setting
for the largest file that does not exceed a target rate, and
:func:`compare_at_rate` does that for every available codec and measures
PSNR and MS-SSIM of the decoded images.

Availability depends on the machine: JPEG, WebP and AVIF come from Pillow
when it was built with them, HEIC from the optional ``pillow_heif`` package,
JPEG XL from the ``cjxl``/``djxl`` command-line tools on ``PATH``.
:func:`available_codecs` lists what works (each codec is probed with a tiny
encode/decode round trip, because e.g. a libavif built with decoders only
passes Pillow's feature check but cannot encode) and :func:`missing_codecs`
says why the others were skipped.

Rates are honest: the whole file counts, headers included.  Metadata is
not written (the encoders get no EXIF/ICC/XMP), so the header is what the
format itself needs.  Chroma subsampling stays at each encoder's default
(4:2:0), which is also what these codecs use at low rates in practice.
"""

import dataclasses
import functools
import io
import math
import os
import shutil
import subprocess
import tempfile
import warnings

import numpy as np
from PIL import Image, features

from compression.errors import CompressionError
from compression.image_io import image_from_array
from compression.metrics import bits_per_pixel, ms_ssim, psnr

__all__ = [
    "Codec",
    "PillowCodec",
    "HeifCodec",
    "JxlCodec",
    "MatchResult",
    "available_codecs",
    "missing_codecs",
    "get_codec",
    "encode_at_bpp",
    "match_rate",
    "compare_at_rate",
    "CODEC_NAMES",
]

# Every codec this module knows, in the order reports list them.
CODEC_NAMES = ("jpeg", "webp", "avif", "heic", "jxl")


class Codec:
    """A lossy image codec with an integer quality setting.

    ``min_quality`` gives the smallest files, ``max_quality`` the largest;
    :func:`encode_at_bpp` assumes the file size grows with the quality.
    """

    name = "codec"
    min_quality = 0
    max_quality = 100

    @property
    def qualities(self):
        """The valid quality settings, smallest files first."""
        return range(self.min_quality, self.max_quality + 1)

    def encode(self, image, quality):
        """uint8 ``[H, W, 3]`` image -> the bytes of a complete file."""
        raise NotImplementedError

    def decode(self, data):
        """The bytes of a file -> uint8 ``[H, W, 3]``."""
        raise NotImplementedError

    def _check_quality(self, quality):
        quality = int(quality)
        if not self.min_quality <= quality <= self.max_quality:
            raise ValueError(
                f"{self.name} quality must be in [{self.min_quality}, {self.max_quality}], "
                f"got {quality}"
            )
        return quality

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} q{self.min_quality}..{self.max_quality}>"


def _decode_with_pillow(data):
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


class PillowCodec(Codec):
    """A codec Pillow writes itself: JPEG, WebP or AVIF."""

    def __init__(self, name, pillow_format, min_quality, max_quality, **options):
        self.name = name
        self.pillow_format = pillow_format
        self.min_quality = min_quality
        self.max_quality = max_quality
        self.options = options

    def encode(self, image, quality):
        quality = self._check_quality(quality)
        buf = io.BytesIO()
        Image.fromarray(image_from_array(image, min_size=1)).save(
            buf, format=self.pillow_format, quality=quality, **self.options
        )
        return buf.getvalue()

    def decode(self, data):
        return _decode_with_pillow(data)


class HeifCodec(Codec):
    """HEIC (HEVC in HEIF) through the optional ``pillow_heif`` package."""

    name = "heic"
    min_quality = 0
    max_quality = 100

    def __init__(self):
        import pillow_heif

        # Lets Image.open and Image.save handle HEIF; idempotent.
        pillow_heif.register_heif_opener()

    def encode(self, image, quality):
        quality = self._check_quality(quality)
        buf = io.BytesIO()
        Image.fromarray(image_from_array(image, min_size=1)).save(
            buf, format="HEIF", quality=quality
        )
        return buf.getvalue()

    def decode(self, data):
        return _decode_with_pillow(data)


class JxlCodec(Codec):
    """JPEG XL through the reference ``cjxl`` / ``djxl`` tools.

    Quality 100 is lossless in cjxl; lower values map to larger Butteraugli
    distances (the tool caps the distance at 25).
    """

    name = "jxl"
    min_quality = 0
    max_quality = 100

    def __init__(self, cjxl, djxl):
        self.cjxl = cjxl
        self.djxl = djxl

    def _run(self, args):
        proc = subprocess.run(args, capture_output=True, timeout=600)
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip().splitlines()
            tail = message[-1] if message else f"exit status {proc.returncode}"
            raise CompressionError(f"{os.path.basename(args[0])} failed: {tail}")

    def encode(self, image, quality):
        quality = self._check_quality(quality)
        image = image_from_array(image, min_size=1)
        with tempfile.TemporaryDirectory(prefix="gcompress-jxl-") as tmp:
            src = os.path.join(tmp, "in.png")
            dst = os.path.join(tmp, "out.jxl")
            # A PNG written by Pillow carries no metadata, so cjxl adds none.
            Image.fromarray(image).save(src, format="PNG", compress_level=1)
            self._run([self.cjxl, src, dst, "-q", str(quality)])
            with open(dst, "rb") as f:
                return f.read()

    def decode(self, data):
        with tempfile.TemporaryDirectory(prefix="gcompress-jxl-") as tmp:
            src = os.path.join(tmp, "in.jxl")
            dst = os.path.join(tmp, "out.png")
            with open(src, "wb") as f:
                f.write(data)
            self._run([self.djxl, src, dst])
            with open(dst, "rb") as f:
                return _decode_with_pillow(f.read())


def _pillow_feature(feature):
    """True if Pillow was built with ``feature``; False for names it does not know."""
    try:
        with warnings.catch_warnings():
            # Pillow warns "Unknown feature" instead of raising for new names.
            warnings.simplefilter("ignore")
            return bool(features.check(feature))
    except (ValueError, KeyError):
        return False


def _make_codec(name):
    """Build the codec ``name`` or raise with the reason it is not available."""
    if name == "jpeg":
        if not _pillow_feature("jpg"):
            raise RuntimeError("Pillow was built without libjpeg")
        # optimize: Huffman tables fitted to the image, a few % smaller for free.
        return PillowCodec("jpeg", "JPEG", 1, 100, optimize=True)
    if name == "webp":
        if not _pillow_feature("webp"):
            raise RuntimeError("Pillow was built without libwebp")
        # method 6 is libwebp's slowest and best rate-distortion search.
        return PillowCodec("webp", "WEBP", 0, 100, method=6)
    if name == "avif":
        if not _pillow_feature("avif"):
            raise RuntimeError("Pillow was built without libavif (Pillow >= 11.3 bundles it)")
        return PillowCodec("avif", "AVIF", 0, 100)
    if name == "heic":
        try:
            return HeifCodec()
        except ImportError:
            raise RuntimeError("pillow_heif is not installed (pip install pillow-heif)") from None
    if name == "jxl":
        cjxl, djxl = shutil.which("cjxl"), shutil.which("djxl")
        if not (cjxl and djxl):
            absent = " and ".join(n for n, p in (("cjxl", cjxl), ("djxl", djxl)) if not p)
            raise RuntimeError(f"{absent} not found on PATH (install libjxl tools)")
        return JxlCodec(cjxl, djxl)
    raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODEC_NAMES)}")


def _probe(codec):
    """Encode and decode a tiny image; raises if the codec does not really work."""
    probe = np.zeros((16, 16, 3), np.uint8)
    probe[:, 8:] = (200, 60, 30)
    decoded = codec.decode(codec.encode(probe, (codec.min_quality + codec.max_quality) // 2))
    if decoded.shape != probe.shape:
        raise RuntimeError(f"round trip gave shape {decoded.shape}, expected {probe.shape}")
    _raise_min_quality(codec, probe)


def _raise_min_quality(codec, probe):
    """Lift ``codec.min_quality`` to the lowest setting that encodes ``probe``.

    Tool versions differ in what they accept at the small end (Debian's
    cjxl 0.7 rejects qualities 0 and 1, whose Butteraugli distances exceed
    its cap), and the rate search starts there.  Assumes that the settings
    that work form one upper range, as they do for every codec here.
    """

    def works(quality):
        try:
            codec.encode(probe, quality)
        except Exception:  # the tool refuses this setting
            return False
        return True

    if works(codec.min_quality):
        return
    # min_quality fails and the probe's middle quality works.
    _, codec.min_quality = _boundary(codec.min_quality,
                                     (codec.min_quality + codec.max_quality) // 2,
                                     lambda quality: not works(quality))


def _boundary(lo, hi, below):
    """Bisect to adjacent ``(lo, hi)``, given ``below(lo)`` and not ``below(hi)``."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if below(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


@functools.lru_cache(maxsize=1)
def _registry():
    """``(available, missing)``, probed once per process."""
    available, missing = {}, {}
    for name in CODEC_NAMES:
        try:
            codec = _make_codec(name)
            _probe(codec)
        except Exception as e:  # any failure means: skip this codec, say why
            missing[name] = str(e) or type(e).__name__
        else:
            available[name] = codec
    return available, missing


def available_codecs():
    """``{name: Codec}`` for the codecs that work on this machine."""
    return dict(_registry()[0])


def missing_codecs():
    """``{name: reason}`` for the known codecs that are not available here."""
    return dict(_registry()[1])


def get_codec(codec):
    """A :class:`Codec` for a name (raises ``ValueError`` saying why if unavailable)."""
    if isinstance(codec, Codec):
        return codec
    available, missing = _registry()
    if codec in available:
        return available[codec]
    if codec in missing:
        raise ValueError(f"codec {codec!r} is not available: {missing[codec]}")
    raise ValueError(f"unknown codec {codec!r}; known: {', '.join(CODEC_NAMES)}")


@dataclasses.dataclass(frozen=True)
class MatchResult:
    """One codec's file at (or as close as it gets to) a target rate.

    ``reached`` is False when even the lowest quality exceeds the target;
    the result is then the smallest file the codec can make.
    """

    codec: str
    quality: int
    data: bytes
    bpp: float
    decoded: np.ndarray
    reached: bool


def encode_at_bpp(image, codec, target_bpp, at_least=False):
    """The largest file of ``codec`` with ``8 * len(data) / (H * W) <= target_bpp``.

    Binary search over the quality, assuming the size grows with it (true up
    to small wiggles; with a wiggle the result is a quality whose file fits
    while the next one up does not).  ``codec`` is a :class:`Codec` or a name.
    ``at_least=True``: the smallest file with at least ``target_bpp`` instead
    (``reached`` then means it got there; the codec's largest file otherwise),
    for showing a classical codec with no fewer bits than ours.
    Returns a :class:`MatchResult`.
    """
    codec = get_codec(codec)
    image = image_from_array(image, min_size=1)
    target_bpp = float(target_bpp)
    if not target_bpp > 0 or math.isinf(target_bpp):
        raise ValueError(f"target_bpp must be a positive number, got {target_bpp}")
    h, w = image.shape[:2]
    files = {}

    def size_ok(quality):
        if quality not in files:
            files[quality] = codec.encode(image, quality)
        rate = bits_per_pixel(len(files[quality]), h, w)
        return rate < target_bpp if at_least else rate <= target_bpp

    lo = codec.min_quality
    fits = size_ok(lo)
    if fits:
        # max_quality + 1 stands for "too big", so the largest, slowest
        # setting is only tried when all others fit.
        lo, hi = _boundary(lo, codec.max_quality + 1, size_ok)
        if at_least:
            lo = min(hi, codec.max_quality)
            size_ok(lo)
    reached = (bits_per_pixel(len(files[lo]), h, w) >= target_bpp) if at_least else fits
    data = files[lo]
    return MatchResult(
        codec=codec.name, quality=lo, data=data, bpp=bits_per_pixel(len(data), h, w),
        decoded=codec.decode(data), reached=reached,
    )


def match_rate(image, target_bpp, codecs=None):
    """:func:`encode_at_bpp` for each codec (default: all available) -> list of MatchResult."""
    if codecs is None:
        codecs = list(available_codecs().values())
    return [encode_at_bpp(image, c, target_bpp) for c in codecs]


def compare_at_rate(image, target_bpp, codecs=None):
    """Encode ``image`` with each codec at ``target_bpp`` and measure the result.

    ``codecs`` is a list of names or :class:`Codec` objects (default: all
    available).  Returns one dict per codec with keys ``codec``, ``quality``,
    ``bpp``, ``bytes``, ``target_bpp``, ``reached``, ``psnr`` and ``ms_ssim``.
    """
    image = image_from_array(image, min_size=1)
    rows = []
    for result in match_rate(image, target_bpp, codecs):
        rows.append({
            "codec": result.codec,
            "quality": result.quality,
            "bpp": result.bpp,
            "bytes": len(result.data),
            "target_bpp": float(target_bpp),
            "reached": result.reached,
            "psnr": psnr(image, result.decoded),
            "ms_ssim": ms_ssim(image, result.decoded),
        })
    return rows
