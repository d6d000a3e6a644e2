"""noisegen: the noise generator of GAN-based extreme image compression.

``dcgan_generator`` maps a noise vector ``z`` to a noise map the size of the
encoder's bottleneck; it is TF1-style (``tf.compat.v1`` graph mode) so it can
be built into, shared within and loaded into other graphs.
"""

from noisegen.generator import DEFAULT_OUTPUT_SIZE, SCOPE, dcgan_generator, sample_noise
from noisegen.portability import (
    export_graph_def,
    export_saved_model,
    generator_variables,
    load_generator_weights,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_OUTPUT_SIZE",
    "SCOPE",
    "dcgan_generator",
    "sample_noise",
    "generator_variables",
    "load_generator_weights",
    "export_saved_model",
    "export_graph_def",
    "__version__",
]
