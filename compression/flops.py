"""Analytic FLOP counts of the compression model, from layer shapes alone.

A FLOP here is one multiply or one add of a convolution, transposed
convolution or dense layer: a layer with ``M`` multiply-accumulates costs
``2 M`` FLOPs (the convention of TensorFlow's profiler):

* conv, ``k x k``, ``cin -> cout``: ``2 k^2 cin cout H_out W_out``;
* transposed conv (stride ``s``, ``same``): ``2 k^2 cin cout H_in W_in``
  (every input pixel is scattered through the whole kernel);
* dense ``n_in -> n_out``: ``2 n_in n_out``.

Bias adds, normalisation, activations, pooling, resizing and padding are not
counted; they are a few element-wise operations per activation against
hundreds of multiply-adds for every output of the convolutions.  Everything
is per image (batch 1).  Nothing here builds a graph, so the numbers are
available for configs far too big to instantiate (benchmarks reuse them).
"""

import math

from compression.encoder import DOWNSAMPLING, check_image_size

__all__ = [
    "conv_flops",
    "conv_transpose_flops",
    "dense_flops",
    "layer_flops",
    "model_flops",
]

# Layer hyperparameters of the modules (see encoder.py, decoder.py,
# discriminator.py, semantic.py and noisegen/generator.py).
_NOISE_GRID = (4, 8)
_NOISE_KERNEL = 5
_D_KERNEL = 4


def conv_flops(kernel_size, cin, cout, out_height, out_width):
    """FLOPs of a ``kernel_size``-square convolution producing ``[out_height, out_width, cout]``."""
    return 2 * kernel_size * kernel_size * cin * cout * out_height * out_width


def conv_transpose_flops(kernel_size, cin, cout, in_height, in_width):
    """FLOPs of a transposed convolution reading ``[in_height, in_width, cin]``."""
    return 2 * kernel_size * kernel_size * cin * cout * in_height * in_width


def dense_flops(n_in, n_out):
    """FLOPs of a fully connected layer ``n_in -> n_out`` (one example)."""
    return 2 * n_in * n_out


def _encoder_layers(prefix, filters, cin, cout, height, width):
    layers = [(f"{prefix}/c7s1", conv_flops(7, cin, filters[0], height, width))]
    h, w = height, width
    for i in range(1, len(filters)):
        h, w = h // 2, w // 2
        layers.append((f"{prefix}/d{i}", conv_flops(3, filters[i - 1], filters[i], h, w)))
    layers.append((f"{prefix}/c3s1_out", conv_flops(3, filters[-1], cout, h, w)))
    return layers


def _noise_layers(config, h, w):
    upsample_dim = config.upsample_dim
    layers = [("noise_generator/fc1",
               dense_flops(config.noise_dim, _NOISE_GRID[0] * _NOISE_GRID[1] * upsample_dim))]
    # The 4x8 grid is resized to ceil(h/8) x ceil(w/8), upsampled x8, then cropped.
    gh, gw = math.ceil(h / 8), math.ceil(w / 8)
    depth = upsample_dim
    for i in (1, 2, 3):
        layers.append((f"noise_generator/upsample{i}",
                       conv_transpose_flops(_NOISE_KERNEL, depth, depth // 2, gh, gw)))
        depth //= 2
        gh, gw = 2 * gh, 2 * gw
    layers.append(("noise_generator/conv_out", conv_flops(7, depth, config.channels, gh, gw)))
    return layers


def _decoder_layers(config, h, w):
    f = config.filters[-1:] + config.tail_filters
    cin = config.channels
    if config.noise:
        cin += config.channels
    if config.semantic_classes:
        cin += config.semantic_channels
    layers = [("decoder/c3s1", conv_flops(3, cin, f[0], h, w))]
    for i in range(config.residual_blocks):
        for j in (1, 2):
            layers.append((f"decoder/res{i + 1}/conv{j}", conv_flops(3, f[0], f[0], h, w)))
    for i in range(1, len(f)):
        if config.upsampling == "resize":  # the 3x3 conv runs at the output's resolution
            flops = conv_flops(3, f[i - 1], f[i], 2 * h, 2 * w)
        else:
            flops = conv_transpose_flops(3, f[i - 1], f[i], h, w)
        layers.append((f"decoder/u{i}", flops))
        h, w = 2 * h, 2 * w
    layers.append(("decoder/c7s1_out", conv_flops(7, f[-1], 3, h, w)))
    return layers


def _discriminator_layers(config, height, width):
    cin0 = 3 + config.semantic_classes
    filters = config.discriminator_filters
    layers = []
    h, w = height, width
    for s in range(config.discriminator_scales):
        if s > 0:  # 3x3 stride-2 SAME average pooling
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        cin, oh, ow = cin0, h, w
        for j, cout in enumerate(filters, start=1):
            oh, ow = math.ceil(oh / 2), math.ceil(ow / 2)  # 4x4 stride-2 SAME
            layers.append((f"discriminator/scale{s + 1}/conv{j}",
                           conv_flops(_D_KERNEL, cin, cout, oh, ow)))
            cin = cout
        layers.append((f"discriminator/scale{s + 1}/logits",
                       conv_flops(_D_KERNEL, cin, 1, oh, ow)))
    return layers


def layer_flops(config, height, width):
    """``[(layer, flops), ...]`` for one ``height x width`` image, in graph order.

    Layer names are the variable scopes (without ``generator/``), e.g.
    ``"encoder/d1"``, ``"decoder/res3/conv2"``, ``"discriminator/scale2/logits"``.
    ``height`` and ``width`` must be multiples of 16.
    """
    check_image_size(height, width)
    h, w = height // DOWNSAMPLING, width // DOWNSAMPLING
    layers = _encoder_layers("encoder", config.filters, 3, config.channels, height, width)
    if config.noise:
        layers += _noise_layers(config, h, w)
    if config.semantic_classes:
        layers += _encoder_layers(
            "semantic_encoder", [max(1, k // 4) for k in config.filters],
            config.semantic_classes, config.semantic_channels, height, width,
        )
    layers += _decoder_layers(config, h, w)
    layers += _discriminator_layers(config, height, width)
    return layers


def model_flops(config, height, width):
    """FLOPs per ``height x width`` image of each part of the model.

    Returns a dict with ``encoder``, ``noise_generator`` (0 without noise),
    ``semantic_encoder`` (0 without semantic maps), ``decoder``,
    ``discriminator`` (all scales, one image), ``encode`` (= encoder),
    ``decode`` (noise generator + semantic encoder + decoder, what a receiver
    runs) and ``generator`` (encode + decode, one training forward pass of G).
    """
    parts = dict.fromkeys(
        ("encoder", "noise_generator", "semantic_encoder", "decoder", "discriminator"), 0
    )
    for name, flops in layer_flops(config, height, width):
        parts[name.split("/")[0]] += flops
    parts["encode"] = parts["encoder"]
    parts["decode"] = parts["noise_generator"] + parts["semantic_encoder"] + parts["decoder"]
    parts["generator"] = parts["encode"] + parts["decode"]
    return parts
