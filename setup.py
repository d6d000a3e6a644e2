"""gcompress: GAN-based extreme image compression (Agustsson et al. 2018) on TensorFlow 2.21."""

import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "noisegen" / "__init__.py").read_text())[1]

setup(
    name="gcompress",
    version=version,
    description="GAN-based extreme image compression: real compressed files at 0.02-0.15 bpp",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["noisegen", "noisegen.*", "compression", "compression.*"]),
    # The shipped models (compression/shipped.py): weights, config and card per model.
    package_data={"compression": ["models/*/*"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        # The layers (noisegen/slim_compat.py makes 1.1.0 import on TF 2.21).
        "tf-slim>=1.1,<1.2",
        "numpy>=2.0",
        "pillow>=11.3",
        "constriction>=0.4,<0.6",
        "tqdm>=4.60",
        "matplotlib>=3.8",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", "scikit-image>=0.24", "ruff>=0.6"],
        # HEIC in `gcompress compare`; JPEG XL needs the cjxl/djxl tools on PATH.
        "codecs": ["pillow-heif>=1.0"],
        # Viewer of the training summaries every run writes (not needed to train).
        "tensorboard": ["tensorboard>=2.20"],
    },
    entry_points={"console_scripts": ["gcompress=compression.cli:console_main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Multimedia :: Graphics",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
