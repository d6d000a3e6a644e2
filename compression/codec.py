"""The codec: images to real ``.gcz`` files and back (format: docs/format.md).

Encoding pads the image by reflection to a multiple of 16 (or leaves out its
last one or two rows and columns beyond one, which the decoder repeats from
its edge: :data:`EXTEND_AT_MOST`), runs the encoder,
entropy-codes the quantiser's symbols with the model's learned per-channel
probabilities and writes them with a header (sizes, noise seed, model
fingerprint, CRC).  Decoding checks everything in the header against the
model, decodes the symbols bit-exactly, runs the decoder with the stored
noise seed and crops (or extends) back to the original size, so any image of at least
16x16 pixels round-trips to exactly its own size.

A :class:`~compression.inference.CompressionModel` is loaded once and codes
any number of images: no graph is rebuilt per image.
"""

import dataclasses
import hashlib
import os
import struct

import numpy as np

from compression import bitstream
from compression.config import DOWNSAMPLING
from compression.context_model import decode_symbols_in_context, encode_symbols_in_context
from compression.context_net import decode_symbols_with_net, encode_symbols_with_net
from compression.correction import GAIN_STEP, apply_correction, fit_correction
from compression.entropy_model import bound_bits, decode_symbols, encode_symbols
from compression.errors import (
    ConfigError,
    CorruptFileError,
    ModelMismatchError,
)
from compression.gain import (
    POSITION_LEVELS,
    default_byte,
    position_from_byte,
)
from compression.image_io import extend_to, image_from_array, pad_to_multiple, to_float
from compression.label_map import (
    check_label_map,
    coarse_labels,
    decode_label_map,
    encode_label_map,
)
from compression.mask import (
    MASK_BITMAP,
    class_ids,
    decode_mask,
    encode_mask_bitmap,
    encode_mask_classes,
    encode_mask_corrected,
    mask_from_labels,
)
from compression.metrics import chroma_speckle, ms_ssim
from compression.rate_control import (
    channel_choices,
    check_channels,
    choose_channels,
    file_bpp,
    highest_rate_position,
    largest_rows,
    partial_channel,
)
from compression.refine import MAX_PIXELS as SEED_SEARCH_PIXELS
from compression.refine import choose_seed, refine_symbols

__all__ = ["EncodeResult", "encode", "decode", "encode_image", "decode_image", "read_symbols",
           "read_payload", "split_payload", "file_stats", "describe_model", "default_seed",
           "noise_seed", "codes_in_context", "encode_in_context", "decode_in_context",
           "DEFAULT_MAX_PIXELS", "EXTEND_AT_MOST", "coded_size"]

#: Decoding refuses files that claim more pixels than this unless told otherwise
#: (``max_pixels``, ``--max-pixels``); see :func:`compression.bitstream.check_pixels`.
DEFAULT_MAX_PIXELS = bitstream.DEFAULT_MAX_PIXELS

#: An image whose height (width) is at most this many rows (columns) beyond a
#: multiple of 16 is coded without them, and its file has the decoder repeat
#: the decoded picture's last row (column) there
#: (:data:`compression.bitstream.FLAG_EXTENDED_ROWS`).  The padded block row
#: that would hold them costs as many bits as any other: for a 481x321
#: photograph, 8% of its file.  Measured with the shipped `general` at 0.036
#: bpp (docs/benchmarks.md): MS-SSIM about +0.003 with one, two or four rows
#: left out, -0.003 with eight; PSNR -0.11 dB with one or two, -0.16 with four
#: (the repeated lines, and a picture edge the decoder draws less well than
#: its middle).
EXTEND_AT_MOST = 2

#: A file whose decode adds more colour speckle than this in its worst tile
#: (:func:`compression.metrics.chroma_speckle`) is re-coded with the seed
#: search over :data:`SPECKLE_SEEDS` noise seeds, unless the caller chose the
#: seed.  Some noise maps make the decoder paint a patch of coloured
#: checkerboard (1 of 100 BSDS500 val photographs at 0.036 bpp with the
#: shipped `general`, none of 101 CamVid frames; it scored 7.4 and 2.9 with a
#: searched seed); faithful decodes score 0-5 (docs/benchmarks.md).  The
#: search keeps the seed of lowest model distortion, so a false alarm costs
#: only encode time.
SPECKLE_LIMIT = 6.0
SPECKLE_SEEDS = 8
#: ... when its typical (median) tile is at most this speckled: a patch on a
#: faithful decode (the two patched decodes measured: 0.2 and -0.1), not a
#: decode speckled everywhere, as an untrained model's is (10), which no seed
#: cures.
SPECKLE_TYPICAL = 1.0


def _speckled(image, decoded):
    """Whether ``decoded`` (uint8 ``[H, W, 3]``) has a patch of coloured speckle that
    ``image`` has not (:data:`SPECKLE_LIMIT`, :data:`SPECKLE_TYPICAL`)."""
    worst, typical = chroma_speckle(image, decoded)
    return worst > SPECKLE_LIMIT and typical <= SPECKLE_TYPICAL


def coded_size(height, width, extend=True):
    """``(h, w)`` of the part of a ``height x width`` image a file codes: the image's own
    size, less the last 1-:data:`EXTEND_AT_MOST` rows (columns) beyond a multiple of 16
    when ``extend`` and at least 16 remain."""
    def part(size):
        spare = size % bitstream.BOTTLENECK_STRIDE
        keep = extend and size >= bitstream.BOTTLENECK_STRIDE and spare <= EXTEND_AT_MOST
        return size - spare if keep else size

    return part(height), part(width)


@dataclasses.dataclass(frozen=True)
class EncodeResult:
    """An encoded image: the file ``data`` and its rate figures.

    ``bpp`` is the whole file (header and CRC included) in bits per pixel of
    the original image; ``bound_bpp`` is ``k log2(L) / 256`` scaled to the
    padded size, the rate a coder without an entropy model would reach;
    ``channels`` is ``k``, the leading bottleneck channels the file codes
    (all ``C`` for a fixed-rate model); ``payload_bpp`` is the entropy-coded
    bottleneck alone and ``label_bpp`` the label map a semantic model's file
    carries (0 otherwise).  A selective file (``keep`` or ``mask``) codes
    only the bottleneck entries inside its mask: ``kept_fraction`` is the
    share of bottleneck cells inside it (1.0 for other files) and
    ``mask_bpp`` the mask's own bits.  ``refined_step``: the step of
    encode-time refinement the file codes (0: the encoder's own bottleneck,
    refined or not).  ``seed``: the noise seed the file stores (None: it
    derives its seed from its symbols).  ``corrected``: whether the file
    carries a colour correction (:mod:`compression.correction`).
    ``last_channel_rows``: the file codes only this many leading rows of its
    last (``k``-th) channel, to fill a ``bpp`` budget (None: all of it);
    :attr:`effective_channels` counts that channel by the share coded.
    ``rate_position``: the rate-position byte of a rate-adaptive model's file
    (:mod:`compression.gain`; 0 the highest rate), None for other models.
    ``extended``: ``(rows, columns)`` at the image's bottom and right that the
    file does not code (the decoder repeats its picture's edge there).
    """

    data: bytes
    height: int
    width: int
    bpp: float
    payload_bpp: float
    bound_bpp: float
    channels: int = 0
    label_bpp: float = 0.0
    mask_bpp: float = 0.0
    kept_fraction: float = 1.0
    refined_step: int = 0
    seed: int | None = None
    corrected: bool = False
    last_channel_rows: int | None = None
    rate_position: int | None = None
    extended: tuple[int, int] = (0, 0)

    @property
    def bottleneck_rows(self):
        """``h``, the rows of the file's bottleneck."""
        return bitstream.bottleneck_size(self.height - self.extended[0], self.width)[0]

    @property
    def effective_channels(self):
        """``channels``, the last one counted by the share of its rows the file codes."""
        if self.last_channel_rows is None:
            return float(self.channels)
        return self.channels - 1 + self.last_channel_rows / self.bottleneck_rows


def default_seed(symbols):
    """The noise seed of a file that stores none: a hash of its coded symbols.

    ``symbols`` is the map the payload codes (``[h, w, k]``, or a selective
    file's ``[1, kept cells, k]``), so equal images give equal files and the
    decoder, having decoded the symbols, derives the seed the encoder used
    (docs/format.md, *Noise seed*).  It is the seed version 1 files stored
    when none was given, so a version 2 file decodes to the same image as the
    version 1 file of the same symbols.
    """
    coded = np.ascontiguousarray(symbols, dtype="<i4")
    digest = hashlib.blake2b(coded.tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def noise_seed(header, symbols, mask=None):
    """The seed the decoder's noise uses: the header's, else :func:`default_seed` of
    the coded symbols (``symbols [h, w, k]``; a selective file's ``mask`` picks its cells)."""
    if header.seed is not None:
        return header.seed
    return default_seed(symbols if mask is None else symbols[mask.astype(bool)][None])


def encode_image(model, image, seed=None, bpp=None, channels=None, labels=None, keep=None,
                 mask=None, label_factor=None, refine=0, seeds=1, correct=True,
                 rate_position=None, extend=True):
    """Encode ``image`` (uint8 ``[H, W, 3]`` or ``[H, W]``) -> :class:`EncodeResult`.

    ``bpp``: the whole file must be at most this many bits per pixel.  A
    variable-rate model codes the largest number ``k`` of leading channels
    that fits (:func:`compression.rate_control.choose_channels`), then fills
    the rest of the budget with the leading rows of channel ``k + 1``
    (:func:`compression.rate_control.largest_rows`) when that decodes to a
    higher MS-SSIM than ``k`` channels alone (it costs one decode more); a
    fixed-rate model codes all of them.  Either raises
    :class:`~compression.errors.RateError`, naming the achievable range, when
    even its smallest file is larger.  ``channels``: code exactly this many
    leading channels instead (one of
    :func:`~compression.rate_control.channel_choices`).  Neither: all channels.
    ``labels``: the image's label map ``[H, W]`` of class ids, required by a
    semantic model (and refused by others); the file carries it losslessly
    (:mod:`compression.label_map`) and its bytes count towards ``bpp``.
    ``label_factor`` (1, 2, 4, 8, 16; default the model's ``label_factor``)
    stores the label map that many times coarser, and the decoder sees it so.

    Selective compression (paper section 4.2; a model trained with
    ``selective_probability > 0``): ``keep``, class names or ids (``"car,
    pedestrian"``, ``"none"``), codes only the bottleneck cells those
    classes touch in ``labels`` and lets the decoder synthesise the rest
    from the label map; ``mask``, a uint8 ``[ceil(H/16), ceil(W/16)]`` array
    of 0 and 1, codes exactly the cells it marks.  The file stores the mask
    (:mod:`compression.mask`) and entropy-codes only the kept entries.

    ``refine``: this many steps of encode-time refinement
    (:mod:`compression.refine`) after the rate is chosen: the bottleneck is
    optimised for this image through the decoder, and the file keeps the
    best iterate that is no larger than ``bpp`` allows or, without ``bpp``,
    than the unrefined file.  Each step costs about five decodes.

    ``seeds``: try this many noise seeds (:func:`compression.refine.choose_seed`;
    1: none, the file derives its seed from its symbols) and store the one
    under which the symbols decode best, in one header byte; with ``bpp`` the
    byte must fit too.  Each seed costs a decode.  It runs before
    ``refine``, which then refines under the chosen seed.  Not with ``seed``.
    With neither, a file whose decode shows a patch of coloured speckle
    (:data:`SPECKLE_LIMIT`; about 1 in 100 photographs) is re-coded with the
    search over :data:`SPECKLE_SEEDS` seeds, at the end.

    ``correct``: the encoder decodes its file and stores the colour
    correction (:mod:`compression.correction`, 6 bytes, counted against
    ``bpp``) that brings the decoded colours and contrast closest to the
    image's; the decoder applies it.  It costs one decode.  A model trained
    with ``corrected_loss`` needs it (its raw decodes carry no colour it was
    taught), so ``correct=False`` is refused for it.

    A rate-adaptive model (:mod:`compression.gain`) codes at a rate position
    the file stores in one byte: ``rate_position`` (0-255) when given, else
    with ``bpp`` the highest-rate position whose file with every channel
    fits (a bisection over the byte, one encoder pass and coding each; only
    when even the lowest rate does not fit are channels cut as above), else
    the model's default (its ``lambda_rate``).

    ``extend``: an image whose height or width is 1-:data:`EXTEND_AT_MOST`
    pixels beyond a multiple of 16 is coded without those rows (columns),
    which the decoder fills by repeating its picture's edge
    (:func:`coded_size`); False pads them into one more block row (column)
    as for other sizes.  Semantic and selective files always code every row.
    """
    if not correct and model.config.corrected_loss:
        raise ConfigError("this model was trained with corrected_loss: its files need the "
                          "colour correction (6 bytes); encode with correct=True")
    for name, value, least in (("refine", refine, 0), ("seeds", seeds, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"{name} takes a number of {'steps' if name == 'refine' else name}"
                              f" >= {least}, got {value!r}")
    if seeds > 1 and seed is not None:
        raise ConfigError("pass seed or seeds, not both: the seed search chooses the seed")
    choices = channel_choices(model.config)
    if channels is not None:
        if bpp is not None:
            raise ValueError("pass bpp or channels, not both")
        check_channels(model.config, channels)
        choices = range(channels, channels + 1)
    image = image_from_array(image)
    if seed is not None and not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be in [0, 2**64) (the file stores a u64), got {seed}")
    h, w = image.shape[:2]
    classes = model.config.semantic_classes
    label_bytes = b""
    if classes:
        if labels is None:
            raise ConfigError("this model is conditioned on semantic label maps: pass the "
                              "image's label map (--labels LABELMAP.png, labels=...)")
        labels = check_label_map(labels, h, w, classes)
        factor = model.config.label_factor if label_factor is None else label_factor
        label_bytes = encode_label_map(labels, factor)
        seen = coarse_labels(labels, factor)  # what the decoder will see
    elif labels is not None:
        raise ConfigError("this model takes no label map (it is not a semantic model); "
                          "drop --labels")
    elif label_factor is not None:
        raise ConfigError("label_factor applies to semantic models only")
    cells, mask_bytes = _selective_mask(model, labels, keep, mask,
                                        bitstream.bottleneck_size(h, w),
                                        seen if classes else None)
    coded_h, coded_w = coded_size(h, w, extend and not classes and cells is None)
    padded, _ = pad_to_multiple(image[:coded_h, :coded_w], DOWNSAMPLING)
    payloads = {}
    placeholder = bytes(bitstream.CORRECTION_SIZE) if correct else None
    rate_byte = _rate_byte(model.config, rate_position, bpp is not None and channels is None)
    position = (None if rate_byte in (None, _SEARCH)
                else position_from_byte(rate_byte, model.config))

    def code(k, symbols, seed=seed, correction=placeholder, rows=None, byte=None):
        kept = symbols[:, :, :k]
        if cells is not None:
            kept = kept[cells.astype(bool)][None]  # [1, kept cells, k]: only they are coded
        payloads[k] = encode_symbols(kept, model.probabilities[:k], rows)
        in_context = False
        if cells is None and codes_in_context(model):
            # Tiny maps give the contexts little to work with: keep the shorter stream.
            contextual = encode_in_context(model, kept, rows, rate_byte if byte is None else byte)
            if len(contextual) < len(payloads[k]):
                payloads[k], in_context = contextual, True
        flags = ((bitstream.FLAG_SEMANTIC_MAP if classes else 0)
                 | (bitstream.FLAG_SELECTIVE_MASK if cells is not None else 0)
                 | (bitstream.FLAG_CONTEXT_CODED if in_context else 0))
        header = bitstream.Header(
            flags=flags,
            fingerprint=model.fingerprint,
            image_height=h, image_width=w,
            bottleneck_channels=k,
            bottleneck_height=symbols.shape[0], bottleneck_width=symbols.shape[1],
            num_centers=model.config.num_centers,
            seed=None if seed is None else int(seed),  # None: derived from the symbols
            model_name=getattr(model, "name", ""),
            correction=correction,  # the placeholder has its size, so rates count it
            last_channel_rows=rows,
            rate_position=rate_byte if byte is None else byte,
        )
        return bitstream.pack(header, _join(label_bytes, mask_bytes, payloads[k]) if classes
                              else payloads[k])

    pixels = h * w
    searched = {}  # rate-position byte -> its symbols, so the chosen one is not encoded again
    highest = None  # bytes of the file with every channel at the highest rate, once coded
    if rate_byte == _SEARCH:
        def code_at(byte):  # every channel, at this rate position
            nonlocal highest
            at = position_from_byte(byte, model.config)
            searched[byte] = model.encode(to_float(padded), at)
            data = code(choices[-1], searched[byte], byte=byte)
            if byte == 0:
                highest = len(data)
            return data

        rate_byte = highest_rate_position(code_at, pixels, bpp)
        position = position_from_byte(rate_byte, model.config)
    latents = None
    if refine:
        symbols, latents = model.encode_with_latents(to_float(padded), position)
    elif rate_byte in searched:
        symbols = searched[rate_byte]
    else:
        symbols = model.encode(to_float(padded), position)
    encoded = symbols  # refinement may replace symbols; a partial channel comes from these
    k, data = choose_channels(lambda k: code(k, symbols), choices, h * w, bpp,
                              largest_bytes=highest)
    decoder_labels = None if not classes else pad_to_multiple(seen, DOWNSAMPLING)[0]

    def fits(candidate, budget=None):
        if bpp is None:
            return budget is None or len(candidate) <= budget
        return file_bpp(len(candidate), pixels) <= bpp

    if seeds > 1:
        # Without bpp the stored seed's byte is the search's only price.
        choice = choose_seed(model, to_float(padded), (coded_h, coded_w), symbols, k,
                             lambda s, file_seed: code(k, s, file_seed), fits, seeds,
                             labels=decoder_labels, cells=cells, correct=correct,
                             position=position)
        seed, data = choice.seed, choice.data
    if refine:
        budget = len(data)
        refined = refine_symbols(
            model, to_float(padded), (coded_h, coded_w), k, lambda s: code(k, s, seed),
            lambda candidate: fits(candidate, budget), refine, seed=seed,
            labels=decoder_labels, cells=cells, latents=latents, correct=correct,
            position=position)
        symbols, data = refined.symbols, refined.data
    # (k, symbols, rows) of each candidate file; the first is the one chosen so far.
    candidates, rows = [(k, symbols, None)], None
    if bpp is not None and cells is None and k < choices[-1]:
        more = np.concatenate([symbols[:, :, :k], encoded[:, :, k:k + 1]], axis=2)
        rows, _ = largest_rows(lambda r: code(k + 1, partial_channel(more, r), seed, rows=r),
                               more.shape[0], pixels, bpp)
        if rows is not None:
            candidates.append((k + 1, partial_channel(more, rows), rows))

    def finish(candidate, seed):  # -> (file, its decode or None)
        data = code(*candidate[:2], seed, rows=candidate[2])
        if not correct and len(candidates) == 1:
            return data, None
        # The file still holds the placeholder, which _reconstruct does not apply.
        decoded = _reconstruct(model, *read_payload(model, data))
        if correct:
            correction = fit_correction(image, decoded)
            data = code(*candidate[:2], seed, correction, rows=candidate[2])
            decoded = apply_correction(decoded, correction)
        return data, decoded

    best = None
    for candidate in candidates:
        data, decoded = finish(candidate, seed)
        if decoded is None:
            break
        score = ms_ssim(image, decoded) if len(candidates) > 1 else 0.0
        if best is None or score > best[0]:
            best = (score, candidate, data, decoded)
    if best is not None:
        _, (k, symbols, rows), data, decoded = best
        if (seeds == 1 and seed is None and padded.shape[0] * padded.shape[1] <= SEED_SEARCH_PIXELS
                and _speckled(image, decoded)):
            choice = choose_seed(model, to_float(padded), (coded_h, coded_w), symbols, k,
                                 lambda s, file_seed: code(k, s, file_seed, rows=rows), fits,
                                 SPECKLE_SEEDS, labels=decoder_labels, cells=cells,
                                 correct=correct, position=position)
            if choice is not None and choice.seed is not None:
                seed = choice.seed
                data, _ = finish((k, symbols, rows), seed)
        # Each file was coded last under its own k, and a payload does not hold the
        # seed: payloads[k] is the chosen file's.
    return EncodeResult(
        data=data, height=h, width=w,
        bpp=file_bpp(len(data), pixels),
        payload_bpp=file_bpp(len(payloads[k]), pixels),
        bound_bpp=bound_bits(symbols[:, :, :k].shape, model.config.num_centers,
                             rows) / pixels,
        channels=k,
        label_bpp=file_bpp(len(label_bytes), pixels),
        mask_bpp=file_bpp(len(mask_bytes or b""), pixels),
        kept_fraction=1.0 if cells is None else float(cells.mean()),
        refined_step=refined.step if refine else 0,
        seed=seed,
        corrected=correct,
        last_channel_rows=rows,
        rate_position=rate_byte,
        extended=(h - coded_h, w - coded_w),
    )


#: :func:`_rate_byte`'s answer when ``--bpp`` chooses the rate position.
_SEARCH = "search"


def _rate_byte(config, rate_position, targeted):
    """The rate-position byte a file of ``config``'s model stores: None for a model
    of one rate, :data:`_SEARCH` when a ``bpp`` target chooses it."""
    if not config.rate_adaptive:
        if rate_position is not None:
            raise ConfigError("this model codes at one rate (it has no gain units); "
                              "rate_position applies to models trained with --rate-lambdas")
        return None
    if rate_position is None:
        return _SEARCH if targeted else default_byte(config)
    if (not isinstance(rate_position, (int, np.integer)) or isinstance(rate_position, bool)
            or not 0 <= rate_position <= POSITION_LEVELS):
        raise ConfigError(f"rate_position is a byte, 0 (the highest rate) to {POSITION_LEVELS} "
                          f"(the lowest); got {rate_position!r}")
    return int(rate_position)


def codes_in_context(model):
    """Whether ``model`` has a context model (flag bit 3 files are its)."""
    return model.context_net is not None or model.context_table is not None


def encode_in_context(model, symbols, last_rows=None, rate=None):
    """The context-coded stream of ``symbols`` ``[h, w, k]`` as ``model`` writes it: with its
    learned context net when it has one (:mod:`compression.context_net`; ``rate``, the
    file's rate-position byte, conditions a rate-adaptive model's), else its count
    table (:mod:`compression.context_model`)."""
    if model.context_net is not None:
        return encode_symbols_with_net(symbols, model.context_net, last_rows, rate)
    return encode_symbols_in_context(symbols, model.context_table[:symbols.shape[2]], last_rows)


def decode_in_context(model, data, shape, last_rows=None, rate=None):
    """Invert :func:`encode_in_context`: the ``[h, w, k]`` symbols of ``shape`` in ``data``."""
    if model.context_net is not None:
        return decode_symbols_with_net(data, shape, model.context_net, last_rows, rate)
    return decode_symbols_in_context(data, shape, model.context_table[:shape[2]], last_rows)


def _selective_mask(model, labels, keep, mask, cells_shape, seen=None):
    """``(cells [h, w] uint8 or None, stored mask bytes or None)`` for ``encode_image``.

    Kept classes give the cells their pixels touch in ``labels``; they are
    stored as the class list when the map the decoder sees (``seen``, coarse
    or not) gives the same cells, else (a thin pole lost to a coarse map) as
    the list with corrections or as a bitmap, whichever is smaller.
    """
    if keep is None and mask is None:
        return None, None
    cfg = model.config
    if keep is not None and mask is not None:
        raise ValueError("pass keep (classes) or mask, not both")
    if not cfg.semantic_classes or not cfg.selective:
        what = ("is not a semantic model" if not cfg.semantic_classes
                else "was not trained for selective compression")
        raise ConfigError(
            f"selective compression (--keep/--synthesize) synthesises the regions it does not "
            f"code from the label map; this model {what}: train one with "
            "'gcompress train --semantic --classes ... --selective 0.5'")
    if keep is not None:
        ids = class_ids(keep, cfg)
        cells = mask_from_labels(labels, ids)
        derived = cells if seen is labels else mask_from_labels(seen, ids)  # coarse map
        if np.array_equal(cells, derived):
            return cells, encode_mask_classes(ids)
        return cells, min(encode_mask_bitmap(cells), encode_mask_corrected(ids, cells, derived),
                          key=len)
    mask = np.asarray(mask)
    if mask.shape != cells_shape or not np.isin(mask, (0, 1)).all():
        raise ConfigError(
            f"mask must be a {cells_shape[0]}x{cells_shape[1]} array of 0 and 1 (one cell per "
            f"16x16 block of the image), got shape {mask.shape}")
    mask = mask.astype(np.uint8)
    return mask, encode_mask_bitmap(mask)


_LENGTH = struct.Struct(">I")


def _join(label_bytes, mask_bytes, symbol_bytes):
    """A semantic file's payload: u32 label-map length, the label map, for a selective
    file u32 mask length and the mask, then the symbol stream (docs/format.md)."""
    mask_part = b"" if mask_bytes is None else _LENGTH.pack(len(mask_bytes)) + mask_bytes
    return _LENGTH.pack(len(label_bytes)) + label_bytes + mask_part + symbol_bytes


def _take(payload, start, what):
    """``(section, end)``: the u32-length-prefixed section at ``start`` of ``payload``."""
    if len(payload) < start + _LENGTH.size:
        raise CorruptFileError(f"corrupt .gcz file: the payload is too short for its {what}")
    (length,) = _LENGTH.unpack_from(payload, start)
    begin = start + _LENGTH.size
    end = begin + length
    if end > len(payload):
        raise CorruptFileError(f"corrupt .gcz file: a {what} of {length} bytes does not fit "
                               f"the {len(payload)}-byte payload")
    return payload[begin:end], end


def split_payload(header, payload):
    """``(label map bytes or None, mask bytes or None, symbol stream)`` of a file's payload."""
    if not header.flags & bitstream.FLAG_SEMANTIC_MAP:
        if header.flags & bitstream.FLAG_SELECTIVE_MASK:
            raise CorruptFileError("corrupt .gcz file: a selective mask without a label map")
        return None, None, payload
    label_bytes, end = _take(payload, 0, "label map")
    mask_bytes = None
    if header.flags & bitstream.FLAG_SELECTIVE_MASK:
        mask_bytes, end = _take(payload, end, "selective mask")
    return label_bytes, mask_bytes, payload[end:]


def encode(model, image, seed=None, bpp=None, labels=None):
    """Encode ``image`` (uint8 ``[H, W, 3]``) to ``.gcz`` bytes; see :func:`encode_image`."""
    return encode_image(model, image, seed, bpp, labels=labels).data


def _check_header(model, header):
    cfg = model.config
    if model.fingerprint[:len(header.fingerprint)] != header.fingerprint:
        raise ModelMismatchError(
            f"this file was written by model {describe_model(header)}, "
            f"but the loaded model is {bitstream.fingerprint_hex(model.fingerprint)} "
            f"({model.run_dir}); decode it with the model that encoded it"
        )
    # The fingerprint matched, so these can only fail for a crafted file; they
    # still bound the decoder's memory before any allocation.
    if bool(header.flags & bitstream.FLAG_SEMANTIC_MAP) != bool(cfg.semantic_classes):
        raise CorruptFileError(
            "header is inconsistent: " + ("a label map is stored, but the model takes none"
                                          if not cfg.semantic_classes else
                                          "the semantic model's label map is missing"))
    expected = bitstream.bottleneck_size(header.image_height, header.image_width, header.flags)
    if header.extended != (0, 0) and header.flags & (bitstream.FLAG_SEMANTIC_MAP
                                                     | bitstream.FLAG_SELECTIVE_MASK):
        raise CorruptFileError("header is inconsistent: semantic and selective files code "
                               "every row and column of the image, but its last ones are "
                               "left out")
    channels = (cfg.channels if not cfg.variable_rate
                else f"{cfg.smallest_channels}..{cfg.channels}")
    if (header.bottleneck_shape[:2] != expected
            or header.bottleneck_channels not in channel_choices(cfg)
            or header.num_centers != cfg.num_centers):
        raise CorruptFileError(
            f"header is inconsistent: bottleneck {header.bottleneck_shape} with "
            f"{header.num_centers} centres for a {header.image_height}x{header.image_width} "
            f"image; the model expects {expected + (channels,)} with {cfg.num_centers} centres"
        )
    if (header.rate_position is None) == cfg.rate_adaptive:
        raise CorruptFileError(
            "header is inconsistent: " + ("a rate position is stored, but the model codes at "
                                          "one rate" if header.rate_position is not None else
                                          "the rate-adaptive model's rate position is missing"))
    if (header.last_channel_rows is not None
            and header.bottleneck_channels - 1 < cfg.smallest_channels):
        raise CorruptFileError(
            f"header is inconsistent: {header.bottleneck_channels - 1} whole channels and part "
            f"of one more; the model decodes at least {cfg.smallest_channels} whole channels")


def describe_model(header):
    """``'name' (fingerprint hex)`` of the model that wrote a file, or the fingerprint alone."""
    digest = bitstream.fingerprint_hex(header.fingerprint)
    return f"{header.model_name!r} ({digest})" if header.model_name else digest


def read_payload(model, data, max_pixels=DEFAULT_MAX_PIXELS):
    """Everything of decoding below the neural decoder: ``(header, symbols [h, w, k], labels,
    mask)``.

    Reads and verifies the container (bytes or a path), checks the pixel
    limit and the header against ``model`` (its ``config``, ``fingerprint``
    and ``probabilities``; no TensorFlow is needed) and entropy-decodes the
    payload; ``labels`` is the label map ``[H, W]`` of a semantic model's
    file, else None; ``mask`` the uint8 ``[h, w]`` mask of a selective file
    (its symbols are 0 outside it), else None.  Raises only the project's
    errors (``BitstreamError`` subclasses, ``ModelMismatchError``);
    ``TypeError`` for a wrong ``data``.
    """
    if isinstance(data, (str, os.PathLike)):
        header, payload = bitstream.read_file(data, max_pixels)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        header, payload = bitstream.unpack(data)
    else:
        raise TypeError(f"data must be the bytes or the path of a .gcz file, "
                        f"got {type(data).__name__}")
    bitstream.check_pixels(header.image_height, header.image_width, max_pixels)
    _check_header(model, header)
    label_bytes, mask_bytes, payload = split_payload(header, payload)
    cfg = model.config
    labels = mask = None
    if label_bytes is not None:
        labels = decode_label_map(label_bytes, (header.image_height, header.image_width),
                                  cfg.semantic_classes)
    probabilities = model.probabilities[:header.bottleneck_channels]
    rows = header.last_channel_rows
    if rows is not None and mask_bytes is not None:
        raise CorruptFileError("header is inconsistent: a selective file codes whole channels")
    if header.flags & bitstream.FLAG_CONTEXT_CODED:
        if mask_bytes is not None:
            raise CorruptFileError("header is inconsistent: a selective file's symbols are "
                                   "never coded in context")
        if not codes_in_context(model):
            raise CorruptFileError("header is inconsistent: the symbols are coded in context, "
                                   "but the model has no context model")
        return (header, decode_in_context(model, payload, header.bottleneck_shape, rows,
                                          header.rate_position),
                labels, None)
    if mask_bytes is None:
        return (header, decode_symbols(payload, header.bottleneck_shape, probabilities, rows),
                labels, None)
    if not cfg.selective:
        raise CorruptFileError("header is inconsistent: a selective mask is stored, but the "
                               "model was not trained for selective compression")
    h, w, k = header.bottleneck_shape
    mask = decode_mask(mask_bytes, (h, w), labels, cfg.semantic_classes)
    kept = decode_symbols(payload, (1, int(mask.sum()), k), probabilities)
    symbols = np.zeros((h, w, k), np.int32)
    symbols[mask.astype(bool)] = kept[0]
    return header, symbols, labels, mask


def read_symbols(model, data, max_pixels=DEFAULT_MAX_PIXELS):
    """``(header, symbols [h, w, k])`` of a file: :func:`read_payload` without the maps."""
    return read_payload(model, data, max_pixels)[:2]


def decode_image(model, data, max_pixels=DEFAULT_MAX_PIXELS):
    """Decode a ``.gcz`` file -> ``(uint8 image [H, W, 3], header)``.

    ``data`` is the file's bytes or its path.  Work and memory are bounded
    before anything is allocated: a file claiming more than ``max_pixels``
    pixels raises :class:`~compression.errors.ImageTooLargeError` (``None``:
    no limit), a payload too short for the claimed size or not exactly the
    coder's stream raises :class:`~compression.errors.CorruptFileError`, and
    large images decode in tiles straight into the uint8 result.  A selective
    file's unkept cells are synthesised from its label map.
    """
    header, symbols, labels, mask = read_payload(model, data, max_pixels)
    image = _reconstruct(model, header, symbols, labels, mask)
    if header.correction is not None:
        image = apply_correction(image, header.correction)
    return image, header


def _reconstruct(model, header, symbols, labels, mask):
    """The decoder's uint8 ``[H, W, 3]`` of a file's :func:`read_payload` parts, before
    the colour correction."""
    if labels is not None:
        labels = pad_to_multiple(labels, DOWNSAMPLING)[0]
    position = (None if header.rate_position is None
                else position_from_byte(header.rate_position, model.config))
    reconstruction = model.decode(symbols, noise_seed(header, symbols, mask), labels=labels,
                                  mask=mask, as_uint8=True, last_rows=header.last_channel_rows,
                                  position=position)
    return extend_to(reconstruction, (header.image_height, header.image_width))


def decode(model, data, max_pixels=DEFAULT_MAX_PIXELS):
    """Decode a ``.gcz`` file (bytes or path) to a uint8 image ``[H, W, 3]``."""
    return decode_image(model, data, max_pixels)[0]


def file_stats(data, max_pixels=DEFAULT_MAX_PIXELS):
    """Header fields and rates of a ``.gcz`` file (bytes or path), without a model.

    For ``gcompress info``; a path is read with :func:`compression.bitstream.read_file`.
    """
    if isinstance(data, (str, os.PathLike)):
        header, payload = bitstream.read_file(data, max_pixels)
        data_size = header.file_size(len(payload))
    else:
        header, payload = bitstream.unpack(data)
        data_size = len(data)
    pixels = header.image_height * header.image_width
    label_bytes, mask_bytes, payload = split_payload(header, payload)
    kept = 1.0
    if mask_bytes is not None:
        labels = None
        if mask_bytes[:1] != bytes([MASK_BITMAP]):  # the codings that name classes
            labels = decode_label_map(label_bytes, (header.image_height, header.image_width), 256)
        kept = float(decode_mask(mask_bytes, header.bottleneck_shape[:2], labels).mean())
    return {
        "height": header.image_height,
        "width": header.image_width,
        "bytes": data_size,
        "bpp": 8 * data_size / pixels,
        "payload_bpp": 8 * len(payload) / pixels,
        "label_bpp": 8 * len(label_bytes or b"") / pixels,
        "mask_bpp": 8 * len(mask_bytes or b"") / pixels,
        "kept_fraction": kept,
        "bound_bpp": bound_bits(header.bottleneck_shape, header.num_centers,
                                header.last_channel_rows) / pixels,
        "channels": header.bottleneck_channels,
        "last_channel_rows": ("all" if header.last_channel_rows is None else
                              f"{header.last_channel_rows} of {header.bottleneck_height}"),
        "repeated_edge": "none" if header.extended == (0, 0) else (
            f"{header.extended[0]} rows, {header.extended[1]} columns"),
        "rate_position": ("-" if header.rate_position is None
                          else f"{header.rate_position} of {POSITION_LEVELS}"),
        "entropy": ("context" if header.flags & bitstream.FLAG_CONTEXT_CODED
                    else "per-channel"),
        "model": bitstream.fingerprint_hex(header.fingerprint),
        "model_name": header.model_name or "-",
        "seed": "from the symbols" if header.seed is None else header.seed,
        "color_correction": ("none" if header.correction is None else
                             _describe_correction(header.correction)),
        "version": header.version,
    }


def _describe_correction(correction):
    """``'means 118,121,97 gains 1.08,1.12,1.05'``: a file's colour correction for people."""
    means, gains = correction[:3], correction[3:]
    return (f"means {','.join(str(m) for m in means)} "
            f"gains {','.join(f'{g * GAIN_STEP:.2f}' for g in gains)}")
