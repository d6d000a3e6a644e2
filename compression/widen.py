"""Widening a trained decoder's upsampling stages (``train --init-from --decoder-tail-width``).

At width 0.25 the decoder's last stages are thin (``u120 .. u60`` become 30
and 15 filters at half and full resolution), while its residual blocks at
1/16 resolution hold most of its weights.  This module gives a trained
model's upsampling stages more filters without losing what they learned:
Net2WiderNet (Chen et al. 2016, "Net2Net", section 2.2).  Each new filter
of stage ``u_i`` copies an old one (round robin: new filter ``j`` copies
``j mod k_i``), with its bias and instance-norm scale and offset; the next
stage (or the output convolution) reads each old filter's copies with its
weights divided among them.  Instance norm normalises each filter alone, so
a copy's normalised output equals its original's and the wider decoder
computes what the source did.

Exact copies would stay equal forever: their gradients are equal, and Adam
moves them alike.  So every copy's kernel gets a little noise
(:data:`COPY_NOISE` of the source kernel's standard deviation), from a seed
fixed by the variable's name so that a weight and its EMA shadow get the same
noise; the wider model then decodes a little differently from the source
(by a level or two on the tests' tiny model) and training pulls the copies apart.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

from .errors import CompressionError

__all__ = ["COPY_NOISE", "check_tail_widening", "copies", "tail_converter"]

#: Standard deviation of the noise on a copied filter's kernel, relative to its source kernel's.
COPY_NOISE = 0.01

_STAGE = re.compile(
    r"generator/decoder/u(\d+)/(weights|biases|InstanceNorm/gamma|InstanceNorm/beta)$")
_OUTPUT = "generator/decoder/c7s1_out/weights"


def copies(old, new):
    """``(source, count)``: which old filter each of ``new`` filters copies (round
    robin), and how many copies each old filter has, ``[new]`` and ``[old]``."""
    source = np.arange(new) % old
    return source, np.bincount(source, minlength=old)


def check_tail_widening(source_config, config, what):
    """Raise unless ``config``'s upsampling stages are at least as wide as the source's."""
    if any(b < a for a, b in zip(source_config.tail_filters, config.tail_filters, strict=True)):
        raise CompressionError(
            f"--init-from {what}: its decoder's upsampling stages have "
            f"{list(source_config.tail_filters)} filters and this config "
            f"{list(config.tail_filters)}; a fine-tune can widen them but not drop trained "
            f"filters: give --decoder-tail-width {source_config.decoder_tail_width} or more")


def _split_inputs(kernel, axis, old, new):
    """``kernel`` reading ``new`` widened inputs along ``axis`` instead of ``old``:
    each old input's weights go to its copies, divided among them."""
    source, count = copies(old, new)
    shape = [1] * kernel.ndim
    shape[axis] = -1
    return (np.take(kernel, source, axis=axis) / count[source].reshape(shape)).astype(kernel.dtype)


def _noisy_copies(kernel, axis, old, seed_name):
    """``kernel`` with noise on the slices ``>= old`` along ``axis`` (the copies)."""
    rng = np.random.default_rng(zlib.crc32(seed_name.encode()))
    noise = rng.standard_normal(kernel.shape) * COPY_NOISE * float(np.std(kernel[
        (slice(None),) * axis + (slice(0, old),)]))
    mask = np.zeros(kernel.shape[axis], bool)
    mask[old:] = True
    shape = [1] * kernel.ndim
    shape[axis] = -1
    return kernel + noise * mask.reshape(shape)


def tail_converter(base, source_config, config):
    """How the stored value of variable ``base`` becomes this config's wider one.

    ``base``: a variable name without its EMA suffix.  Returns
    ``convert(old) -> new`` (numpy), or None when ``base`` is not part of the
    upsampling tail or the tail is as wide as the source's.
    """
    old_k, new_k = source_config.tail_filters, config.tail_filters
    if old_k == new_k:
        return None
    # Input and output axes of each stage's kernel.
    transposed = config.upsampling == "transposed"
    out_axis, in_axis = (2, 3) if transposed else (3, 2)
    if base == _OUTPUT:  # [7, 7, in, 3]
        return lambda old: _split_inputs(old, 2, old_k[-1], new_k[-1])
    m = _STAGE.match(base)
    if m is None:
        return None
    i, part = int(m.group(1)), m.group(2)
    source, _ = copies(old_k[i - 1], new_k[i - 1])
    if part != "weights":
        return lambda old: np.take(old, source, axis=0)

    def convert(old):
        new = np.take(old, source, axis=out_axis)
        if i > 1:  # its input is the previous stage's widened output
            new = _split_inputs(new, in_axis, old_k[i - 2], new_k[i - 2])
        return _noisy_copies(new, out_axis, old_k[i - 1], base).astype(old.dtype)
    return convert
