"""Parameter counts and FLOPs of the compression model, per part.

Usage (from the repository root)::

    python scripts/model_stats.py                 # paper model and the small model
    python scripts/model_stats.py --config runs/x/config.json --json

Parameters are counted from the variables of a freshly built graph (nothing
is initialised or run).  FLOPs come from :func:`compression.flops.model_flops`
(multiply-adds x 2 of the conv / transposed-conv / dense layers, per image)
at 512x1024 (a Cityscapes image as the paper codes it) and at the config's
training crop.  The discriminator row is all its scales on one image.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from compression.config import CompressionConfig  # noqa: E402
from compression.discriminator import multiscale_discriminator  # noqa: E402
from compression.flops import model_flops  # noqa: E402
from compression.model import encode, synthesize  # noqa: E402

_v1 = tf.compat.v1

PARTS = (
    ("encoder", "generator/encoder"),
    ("noise_generator", "generator/noise_generator"),
    ("semantic_encoder", "generator/semantic_encoder"),
    ("decoder", "generator/decoder"),
    ("discriminator", "discriminator"),
)
REFERENCE_SIZE = (512, 1024)


def named_configs():
    return {
        "paper (width 1.0, C=8)": CompressionConfig(),
        "small (width 0.25, 256x512 crop, C=8)": CompressionConfig(
            width=0.25, crop_height=256, crop_width=512, channels=8),
    }


def parameter_counts(config):
    """Trainable parameters per part, from a graph built at the config's crop size."""
    height, width = config.crop_size
    with tf.Graph().as_default() as graph:
        images = _v1.placeholder(tf.float32, [1, height, width, 3])
        one_hot = None
        if config.semantic_classes:
            one_hot = _v1.placeholder(tf.float32, [1, height, width, config.semantic_classes])
        z = _v1.placeholder(tf.float32, [1, config.noise_dim]) if config.noise else None
        _, q = encode(images, config)
        synthesize(q.w_hat, config, False, z=z, labels_one_hot=one_hot)
        multiscale_discriminator(images, config, one_hot)
        variables = graph.get_collection(_v1.GraphKeys.TRAINABLE_VARIABLES)
    return {
        part: sum(v.shape.num_elements() for v in variables if v.op.name.startswith(scope + "/"))
        for part, scope in PARTS
    }


def stats(config):
    params = parameter_counts(config)
    sizes = {"512x1024": REFERENCE_SIZE, f"{config.crop_height}x{config.crop_width}":
             config.crop_size}
    flops = {name: model_flops(config, *size) for name, size in sizes.items()}
    return {"config": config.to_dict(), "params": params, "flops": flops}


def print_table(title, result):
    print(f"\n{title}")
    sizes = list(result["flops"])
    header = f"  {'part':18s} {'params':>14s}" + "".join(f" {'GFLOPs ' + s:>18s}" for s in sizes)
    print(header)
    print("  " + "-" * (len(header) - 2))
    for part, _ in PARTS:
        n = result["params"][part]
        if n == 0 and all(result["flops"][s][part] == 0 for s in sizes):
            continue
        row = f"  {part:18s} {n:>14,d}"
        row += "".join(f" {result['flops'][s][part] / 1e9:>18.2f}" for s in sizes)
        print(row)
    total = sum(result["params"].values())
    print(f"  {'total':18s} {total:>14,d}"
          + "".join(f" {sum(result['flops'][s][p] for p, _ in PARTS) / 1e9:>18.2f}"
                    for s in sizes))
    for s in sizes:
        f = result["flops"][s]
        print(f"  at {s}: encode {f['encode'] / 1e9:.2f} GFLOPs, "
              f"decode {f['decode'] / 1e9:.2f} GFLOPs")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", default=[],
                        help="a config.json to report as well (repeatable)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    configs = named_configs()
    for path in args.config:
        configs[path] = CompressionConfig.load(path)
    results = {name: stats(cfg) for name, cfg in configs.items()}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("FLOPs = 2 x multiply-adds of conv / transposed conv / dense layers, per image")
    for name, result in results.items():
        print_table(name, result)


if __name__ == "__main__":
    main()
