"""The DCGAN-style noise generator of global generative compression.

The decoder of Agustsson et al. (2018, section 3.2 and appendix A) sees
``concat(w_hat, v)``: the quantised bottleneck ``w_hat`` ``[B, h, w, C]`` and a
noise map ``v`` of the same spatial size drawn by this generator from a noise
vector ``z``.  Only the seed of ``z`` is stored in a compressed file, so the
noise costs no bits.

Layer table for the default ``output_size=(32, 64)`` (a 512x1024 image), all
under the scope ``noise_generator/``:

=============  ===================================================  ==================
scope          operation                                            output
=============  ===================================================  ==================
``fc1``        dense ``noise_dim -> 4*8*upsample_dim``, act, BN      ``[B, 4, 8, 256]``
``upsample1``  5x5 stride-2 transposed conv, ``upsample_dim/2``, BN  ``[B, 8, 16, 128]``
``upsample2``  same, ``upsample_dim/4``                              ``[B, 16, 32, 64]``
``upsample3``  same, ``upsample_dim/8``                              ``[B, 32, 64, 32]``
``conv_out``   reflect pad 3, 7x7 VALID conv to ``C``, no act        ``[B, 32, 64, C]``
=============  ===================================================  ==================

Any other bottleneck size ``(h, w)`` uses the same variables: the 4x8 grid
from ``fc1`` is resampled (bilinear) to ``(ceil(h/8), ceil(w/8))`` before the
three learned x2 upsamplings, and the result is cropped to ``(h, w)``.  For
``(32, 64)`` the resampling and crop are the identity, so the table holds
exactly.

The layers are tf-slim's (``slim.fully_connected``, ``slim.conv2d_transpose``,
``slim.batch_norm``, ``slim.conv2d``), so an enclosing ``slim.arg_scope``
reaches the generator.  It takes from an arg_scope what does not change the
architecture: ``weights_initializer`` (default: slim's Xavier),
``weights_regularizer``, ``biases_initializer``, ``biases_regularizer``,
``trainable`` and ``outputs_collections`` of the dense and convolution layers,
and ``param_initializers``, ``param_regularizers`` and ``trainable`` of batch
norm.  It fixes what the layer table and trained checkpoints depend on: layer
sizes, kernel sizes, strides, padding, ``activation_fn`` (the ``actv``
argument), no ``normalizer_fn`` inside the layers, NHWC, and batch norm's
``decay`` (0.99), ``epsilon`` (1e-3), ``center``/``scale``, the fused kernel
and ``updates_collections=None`` (moving statistics update whenever the
output is computed in training mode; no ``UPDATE_OPS`` to run).
"""

import operator

import tensorflow as tf

from noisegen.layers import reflect_pad
from noisegen.slim_compat import batch_norm, slim

__all__ = ["dcgan_generator", "sample_noise", "DEFAULT_OUTPUT_SIZE", "SCOPE"]

SCOPE = "noise_generator"
#: Batch-norm settings of the generator (fixed; an enclosing arg_scope cannot change them).
BATCH_NORM_DECAY = 0.99
BATCH_NORM_EPSILON = 1e-3
DEFAULT_OUTPUT_SIZE = (32, 64)
_BASE_GRID = (4, 8)
_DEFAULT_NOISE_DIM = 128
_DEFAULT_UPSAMPLE_DIM = 256

_v1 = tf.compat.v1
# The moving statistics stay in MOVING_AVERAGE_VARIABLES, as before tf-slim.
_BATCH_NORM_COLLECTIONS = {
    "moving_mean": [_v1.GraphKeys.MOVING_AVERAGE_VARIABLES],
    "moving_variance": [_v1.GraphKeys.MOVING_AVERAGE_VARIABLES],
}


def _as_int(value):
    """``value`` as a Python int if it is an integer of any kind (numpy included), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _field(config, name, default):
    value = getattr(config, name, None) if config is not None else None
    return default if value is None else value


def _check_size_component(value, name):
    """Validate one component of ``output_size``; returns an int or an int32 tensor."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return tf.cast(value, tf.int32)
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(value)
        except (TypeError, ValueError):
            as_int = None
        if as_int is None or as_int != value:
            raise ValueError(
                f"output_size {name} must be a positive integer (or a scalar int tensor), "
                f"got {value!r}"
            )
        value = as_int
    if value < 1:
        raise ValueError(f"output_size {name} must be at least 1, got {value}")
    return value


def dcgan_generator(
    z,
    config,
    training,
    C,
    reuse=False,
    actv=tf.nn.relu,
    kernel_size=5,
    upsample_dim=None,
    output_size=DEFAULT_OUTPUT_SIZE,
    scope=SCOPE,
):
    """Build the noise generator: ``z [B, noise_dim] -> noise map [B, h, w, C]``.

    Args:
      z: float tensor ``[B, noise_dim]`` (see :func:`sample_noise`).
      config: ``None`` or any object; its ``noise_dim`` and ``upsample_dim``
        attributes are used when present (``noise_dim`` must match ``z``).
      training: Python bool or scalar bool tensor.  Training normalises by the
        batch and updates the batch-norm moving statistics whenever the output
        is evaluated; inference uses the moving statistics.
      C: bottleneck depth, the number of output channels.
      reuse: ``False``, ``True`` or ``tf.compat.v1.AUTO_REUSE``; shares every
        variable of an earlier call under the same enclosing scope.
      actv: activation after ``fc1`` and each upsampling.
      kernel_size: kernel size of the transposed convolutions.
      upsample_dim: depth of the 4x8 grid (must be divisible by 8).  Default:
        ``config.upsample_dim`` when present, else 256.
      output_size: ``(h, w)`` of the bottleneck, ints or scalar int tensors;
        ``(32, 64)`` for a 512x1024 image.
      scope: the generator's variable scope name.  Keep the default
        ``noise_generator``: :mod:`noisegen.portability` finds generators in
        graphs and checkpoints by that name.

    Returns:
      float32 tensor ``[B, h, w, C]``.

    Raises:
      ValueError: ``z`` not of rank 2, ``C`` < 1, ``output_size`` < 1,
        ``upsample_dim`` not a positive multiple of 8, ``noise_dim`` mismatch.
    """
    z = tf.convert_to_tensor(z)
    if z.shape.rank != 2:
        raise ValueError(
            f"z must have rank 2, shape [batch, noise_dim], got shape {z.shape}; "
            "draw it with noisegen.sample_noise(batch_size, noise_dim, seed)"
        )
    if z.shape[1] is None:
        raise ValueError("z must have a known noise_dim (its second dimension), got None")
    if not z.dtype.is_floating:
        raise ValueError(f"z must be a float tensor, got dtype {z.dtype.name}")
    noise_dim = int(z.shape[1])
    expected_noise_dim = getattr(config, "noise_dim", None) if config is not None else None
    if expected_noise_dim is not None and int(expected_noise_dim) != noise_dim:
        raise ValueError(
            f"z has noise_dim {noise_dim} but config.noise_dim is {expected_noise_dim}; "
            "draw z with the config's noise_dim"
        )
    if _as_int(C) is None or _as_int(C) < 1:
        raise ValueError(f"C (the bottleneck depth) must be a positive integer, got {C!r}")
    C = _as_int(C)
    if upsample_dim is None:
        upsample_dim = _field(config, "upsample_dim", _DEFAULT_UPSAMPLE_DIM)
    if _as_int(upsample_dim) is None or upsample_dim < 8 or upsample_dim % 8:
        raise ValueError(
            f"upsample_dim must be a positive multiple of 8 (e.g. 256), got {upsample_dim!r}"
        )
    upsample_dim = _as_int(upsample_dim)
    if _as_int(kernel_size) is None or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive integer, got {kernel_size!r}")
    kernel_size = _as_int(kernel_size)
    if not isinstance(training, bool):
        # Checked here, before any variable exists, rather than in the first batch norm.
        training = tf.convert_to_tensor(training)
        if training.dtype != tf.bool or training.shape.rank not in (None, 0):
            raise ValueError(
                "training must be a Python bool or a scalar bool tensor, got "
                f"{training.dtype.name} tensor of shape {training.shape}"
            )
    try:
        out_h, out_w = output_size
    except (TypeError, ValueError):
        raise ValueError(
            f"output_size must be a pair (h, w) of positive integers, got {output_size!r}"
        ) from None
    out_h = _check_size_component(out_h, "height")
    out_w = _check_size_component(out_w, "width")
    z = tf.cast(z, tf.float32)

    def norm(x):
        return batch_norm(
            x, is_training=training, decay=BATCH_NORM_DECAY, epsilon=BATCH_NORM_EPSILON,
            center=True, scale=True, fused=True, data_format="NHWC", scope="BatchNorm",
            variables_collections=_BATCH_NORM_COLLECTIONS)

    fixed = dict(activation_fn=actv, normalizer_fn=None)
    with _v1.variable_scope(scope, reuse=reuse):
        with _v1.variable_scope("fc1") as sc:
            x = slim.fully_connected(z, _BASE_GRID[0] * _BASE_GRID[1] * upsample_dim,
                                     scope=sc, **fixed)
            x = norm(x)
        x = tf.reshape(x, [-1, _BASE_GRID[0], _BASE_GRID[1], upsample_dim])

        grid_h = (out_h + 7) // 8
        grid_w = (out_w + 7) // 8
        static_grid = isinstance(grid_h, int) and isinstance(grid_w, int)
        if not (static_grid and (grid_h, grid_w) == _BASE_GRID):
            x = tf.image.resize(x, tf.stack([grid_h, grid_w]), method="bilinear")
            if static_grid:
                x.set_shape([None, grid_h, grid_w, upsample_dim])

        depth = upsample_dim
        for i in (1, 2, 3):
            depth //= 2
            with _v1.variable_scope(f"upsample{i}") as sc:
                x = slim.conv2d_transpose(x, depth, kernel_size, 2, padding="SAME",
                                          data_format="NHWC", scope=sc, **fixed)
                x = norm(x)

        with _v1.variable_scope("conv_out") as sc:
            x = slim.conv2d(reflect_pad(x, 3), C, 7, 1, padding="VALID", data_format="NHWC",
                            activation_fn=None, normalizer_fn=None, scope=sc)
        if not (isinstance(out_h, int) and isinstance(out_w, int) and
                (out_h, out_w) == (8 * grid_h, 8 * grid_w)):
            x = x[:, :out_h, :out_w, :]
    return x


def sample_noise(batch_size, noise_dim, seed):
    """Draw ``z`` ``[batch_size, noise_dim]`` from a stateless normal RNG.

    The same ``seed`` (a Python int in ``[0, 2**63)`` or a scalar int64
    tensor) always gives the same ``z``, in any graph and any session, so the
    encoder and the decoder of a file agree on the noise without sending it.
    Returns a float32 tensor (an eager tensor outside a graph).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(noise_dim, bool) or not isinstance(noise_dim, int) or noise_dim < 1:
        raise ValueError(f"noise_dim must be a positive integer, got {noise_dim!r}")
    if isinstance(seed, int) and not isinstance(seed, bool):
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    seed = tf.cast(seed, tf.int64)
    # The second seed word is fixed: one int seed per file is what the
    # bitstream stores.
    pair = tf.stack([seed, tf.constant(0x6E6F697365, tf.int64)])
    return tf.random.stateless_normal([batch_size, noise_dim], seed=pair, dtype=tf.float32)
