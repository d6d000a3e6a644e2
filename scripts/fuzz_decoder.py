"""Fuzz the decoder with mutated .gcz files; print a classified summary.

Usage (from the repository root)::

    python scripts/fuzz_decoder.py --mutants 10000 --level entropy
    python scripts/fuzz_decoder.py --mutants 500 --level full [--model RUN_DIR]

Valid files are made first (``entropy``: random symbol maps of random sizes
under a skewed probability table; ``full``: real photographs coded by a
model, by default a freshly initialised width-0.25 one), then mutated:

* ``flip``, ``bytes``, ``truncate``, ``extend``, ``splice``: raw damage that
  the CRC (or magic/version/length) must catch;
* ``header``: one header field set to a random or extreme value, CRC fixed;
* ``payload-flip``, ``payload-cut``, ``payload-grow``, ``payload-random``,
  ``payload-empty``: payload damage with the length field and CRC fixed;
* ``claim``: a valid file's header claiming a huge image, CRC fixed.

Half of the mutants (the second group) have a valid CRC, i.e. are what a
hostile writer, not a bad disk, makes.  ``entropy`` runs everything below
TensorFlow (container, header checks, entropy decoder:
:func:`compression.codec.read_symbols`); ``full`` decodes to pixels.

Every mutant runs under a time limit (the process is stopped with a
traceback if one hangs) and its peak resident memory is measured (Linux:
the high-water mark is reset before each item).  Outcomes are classified as
``decoded`` (``silent`` when a payload mutant decoded to something other
than the original), the project's error classes, or ``UNEXPECTED`` (any
other exception: a bug).  Exit status 1 if anything unexpected happened or
a limit was exceeded.
"""

import argparse
import collections
import faulthandler
import json
import os
import random
import struct
import sys
import time
import types
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from compression import bitstream  # noqa: E402
from compression.errors import CompressionError  # noqa: E402

RAW = ("flip", "bytes", "truncate", "extend", "splice")
CRAFTED = ("header", "payload-flip", "payload-cut", "payload-grow", "payload-random",
           "payload-empty", "claim")
PAYLOAD_KINDS = frozenset(k for k in CRAFTED if k.startswith("payload"))

# Header fields a "header" mutant sets, with the largest value each can hold
# (version 1: its fixed width; version 2: what a varint of the field can say).
_FIELD_TOPS = {
    1: {"version": 2**8 - 1, "flags": 2**16 - 1, "image_height": 2**32 - 1,
        "image_width": 2**32 - 1, "bottleneck_channels": 2**16 - 1,
        "bottleneck_height": 2**16 - 1, "bottleneck_width": 2**16 - 1,
        "num_centers": 2**8 - 1, "seed": 2**64 - 1, "length": 2**32 - 1},
    2: {"version": 2**8 - 1, "flags": 2**21 - 1, "image_height": 2**35 - 1,
        "image_width": 2**35 - 1, "bottleneck_channels": 2**21 - 1, "num_centers": 2**8 - 1,
        "seed": 2**64 - 1, "length": 2**35 - 1},
}


def _with_crc(body):
    body = bytes(body)
    return body + struct.pack(">I", zlib.crc32(body))


def _fields(data):
    """``(fields, payload)`` of a valid file: its header as a plain dict (plus ``name``)."""
    header, payload = bitstream.unpack(data)
    fields = {f: getattr(header, f) for f in _FIELD_TOPS[1] if f != "length"}
    fields.update(name=header.model_name.encode("utf-8"), fingerprint=header.fingerprint,
                  length=len(payload), layout=header.version)
    return fields, payload


def _serialize(fields, payload):
    """A file with these header fields, whatever their values, and a valid CRC.

    Unlike ``bitstream.pack`` nothing is validated: this writes what a
    hostile writer could, in the layout of ``fields["layout"]`` (1 or 2),
    whatever its ``version`` byte says.  Version 1 values are cut to the
    field's width; a version 2 seed is written when not None, whatever the flags say.
    """
    f, name = fields, fields["name"]
    named = bytes([len(name)]) + name if f["flags"] & bitstream.FLAG_MODEL_NAME and name else b""
    if f["layout"] == 2:
        varint = bitstream._varint
        head = (bitstream.MAGIC + bytes([f["version"] & 0xFF]) + varint(f["flags"])
                + f["fingerprint"] + varint(f["image_height"]) + varint(f["image_width"])
                + varint(f["bottleneck_channels"]) + bytes([f["num_centers"] & 0xFF]))
        if f["seed"] is not None:
            head += varint(f["seed"])
        return _with_crc(head + named + varint(f["length"]) + payload)
    cut = {k: v & top for k, v in f.items() if (top := _FIELD_TOPS[1].get(k)) and v is not None}
    head = struct.pack(">4sBH16sIIHHHBQI", bitstream.MAGIC, cut["version"], cut["flags"],
                       f["fingerprint"], cut["image_height"], cut["image_width"],
                       cut["bottleneck_channels"], cut["bottleneck_height"],
                       cut["bottleneck_width"], cut["num_centers"], cut.get("seed", 0),
                       cut["length"])
    return _with_crc(head + named + payload)


def _repayload(data, payload):
    fields, _ = _fields(data)
    fields["length"] = len(payload)
    return _serialize(fields, payload)


def mutate(data, kind, rng, other):
    """One mutant of the valid file ``data`` (``other``: a second valid file for splices)."""
    data = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == "bytes":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == "truncate":
        return bytes(data[:rng.randrange(len(data))])
    if kind == "extend":
        return bytes(data) + rng.randbytes(rng.randint(1, 64))
    if kind == "splice":
        cut = rng.randrange(len(data))
        return bytes(data[:cut]) + bytes(other[rng.randrange(len(other)):])
    fields, payload = _fields(bytes(data))
    if kind == "header":
        tops = _FIELD_TOPS[fields["version"]]
        name = rng.choice(sorted(tops))
        top = tops[name]
        fields[name] = rng.choice([0, 1, top, top // 2 + 1, rng.randrange(top + 1)])
        return _serialize(fields, payload)  # in the file's layout, whatever "version" says
    if kind == "payload-flip":
        if not payload:
            return _repayload(data, b"\0\0\0\1")
        flipped = bytearray(payload)
        for _ in range(rng.randint(1, 3)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        return _repayload(data, bytes(flipped))
    if kind == "payload-cut":
        return _repayload(data, payload[:rng.randrange(len(payload) + 1)])
    if kind == "payload-grow":
        return _repayload(data, payload + rng.randbytes(4 * rng.randint(1, 16)))
    if kind == "payload-random":
        return _repayload(data, rng.randbytes(4 * rng.randint(0, max(1, len(payload) // 2))))
    if kind == "payload-empty":
        return _repayload(data, b"")
    if kind == "claim":
        side = rng.choice([1024, 4096, 8192, 16384, 65535, 2**20])
        h, w = side, rng.choice([side, 16, 2**20])
        fields.update(image_height=h, image_width=w,
                      bottleneck_height=min(-(-h // 16), 65535),
                      bottleneck_width=min(-(-w // 16), 65535))
        return _serialize(fields, payload)
    raise ValueError(f"unknown mutation kind {kind!r}")


def entropy_corpus(rng, count=24):
    """``(stand-in model, [valid files], [their symbols])`` for the layers below TensorFlow."""
    from compression.config import CompressionConfig
    from compression.context_model import context_counts, context_probabilities
    from compression.entropy_model import probabilities_from_counts

    config = CompressionConfig(channels=4, width=0.25)
    nprng = np.random.default_rng(rng.randrange(2**32))
    probs = probabilities_from_counts(np.round(nprng.dirichlet(np.full(5, 0.3), 4) * 1e6))
    # Contexts counted on maps of the same law: a table of the right shape and sparsity.
    fitting = [np.stack([nprng.choice(5, size=(24, 32), p=p / p.sum()) for p in probs], -1)
               for _ in range(4)]
    table = context_probabilities(sum(context_counts(m, 5) for m in fitting), probs)
    model = types.SimpleNamespace(config=config, fingerprint=bytes(range(16)),
                                  probabilities=probs, context_table=table, context_net=None,
                                  run_dir="(fuzz model)")
    # A model with a learned context model codes in context with it instead.
    with_net = types.SimpleNamespace(**{**vars(model), "context_net": random_net(nprng, 4, 5),
                                        "fingerprint": bytes(range(1, 17))})
    owners, files, truth = [], [], []
    for i in range(count):
        height, width = rng.randint(16, 400), rng.randint(16, 400)
        # Every other file is context-coded (with the table or the net), so every
        # entropy decoder is fuzzed; half are in version 1's layout (old files must
        # still read safely), and half the version 2 files leave their seed to the symbols.
        version = 2 if i % 4 >= 2 else 1
        seed = None if version == 2 and i % 8 >= 6 else rng.randrange(2**64)
        owner = with_net if i % 8 in (3, 5) else model
        data, symbols = honest_file(owner, height, width, nprng, seed=seed,
                                    in_context=bool(i % 2), version=version)
        owners.append(owner)
        files.append(data)
        truth.append(symbols)
    return owners, files, truth


def random_net(nprng, channels, num_centers, width=32):
    """A :class:`~compression.context_net.ContextNet` of random weights (sharp predictions)."""
    from compression.context_net import from_float, positions

    values = num_centers + 2
    return from_float(nprng.normal(0, 0.5, (positions() * values, width)),
                      np.zeros((channels, width)),
                      nprng.normal(0, 1 / np.sqrt(width), (width, width)), np.zeros(width),
                      nprng.normal(0, 1.0, (channels, width, num_centers)),
                      np.zeros((channels, num_centers)))


def honest_file(model, height, width, nprng, seed=1, in_context=False, version=2):
    """``(file, symbols)``: a valid file claiming ``height x width`` for ``model``.

    The symbols are drawn from the model's own probabilities, so the payload
    justifies the claimed size; ``in_context``: coded with the model's
    context net, or else its context table (``FLAG_CONTEXT_CODED``);
    ``version``: the container layout.
    """
    from compression.codec import encode_in_context
    from compression.entropy_model import encode_symbols
    from compression.gain import default_byte

    probs = model.probabilities
    shape = (-(-height // 16), -(-width // 16), model.config.channels)
    symbols = np.stack([nprng.choice(probs.shape[1], size=shape[:2], p=probs[c] / probs[c].sum())
                        for c in range(shape[2])], -1).astype(np.int32)
    header = bitstream.Header(
        fingerprint=model.fingerprint, image_height=height, image_width=width,
        bottleneck_channels=shape[2], bottleneck_height=shape[0], bottleneck_width=shape[1],
        num_centers=model.config.num_centers, seed=seed, version=version,
        flags=bitstream.FLAG_CONTEXT_CODED if in_context else 0,
        rate_position=default_byte(model.config))  # a rate-adaptive model's files store one
    payload = (encode_in_context(model, symbols, rate=header.rate_position) if in_context
               else encode_symbols(symbols, probs))
    return bitstream.pack(header, payload), symbols


def full_corpus(model, rng, count=6):
    """``[valid files], [their decoded images]`` of real photographs coded by ``model``."""
    from skimage import data as skdata

    from compression.codec import decode, encode

    photos = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    files, truth = [], []
    for i in range(count):
        photo = photos[i % len(photos)]
        step = rng.choice([4, 6, 8])
        image = np.ascontiguousarray(photo[::step, ::step, :3])
        data = encode(model, image, seed=rng.randrange(2**64) if i % 2 else None)
        files.append(data)
        truth.append(decode(model, data))
    return files, truth


class _PeakMemory:
    """Per-item peak resident memory via Linux's resettable high-water mark (else None)."""

    def __init__(self):
        self.available = os.path.exists("/proc/self/clear_refs")

    def reset(self):
        if self.available:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self.available = False

    def peak_bytes(self):
        if not self.available:
            return None
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return None


def run(mutants, level="entropy", seed=0, model=None, time_limit=30.0,
        memory_limit=int(1.2 * 2**30), max_pixels=bitstream.DEFAULT_MAX_PIXELS, log=print):
    """Fuzz ``mutants`` files; returns the summary dict (see the module docstring)."""
    from compression.codec import decode, read_symbols

    rng = random.Random(seed)
    if level == "entropy":
        owners, files, truth = entropy_corpus(rng)

        def attempt(data, source):
            return read_symbols(owners[source], data, max_pixels)[1]
    elif level == "full":
        if model is None:
            raise ValueError("level 'full' needs a model")
        files, truth = full_corpus(model, rng)

        def attempt(data, source):
            return decode(model, data, max_pixels)
    else:
        raise ValueError(f"level must be 'entropy' or 'full', got {level!r}")

    outcomes = collections.Counter()
    by_kind = collections.defaultdict(collections.Counter)
    unexpected, slowest, peak = [], 0.0, 0
    memory = _PeakMemory()
    start = time.monotonic()
    for index in range(mutants):
        # Alternate raw and crafted mutants: half of them have a valid CRC.
        kind = rng.choice(RAW) if index % 2 == 0 else rng.choice(CRAFTED)
        source = rng.randrange(len(files))
        data = mutate(files[source], kind, rng, files[rng.randrange(len(files))])
        memory.reset()
        faulthandler.dump_traceback_later(time_limit, exit=True)
        began = time.monotonic()
        try:
            result = attempt(data, source)
        except CompressionError as e:
            outcome = type(e).__name__
        except Exception as e:  # anything else is a bug in the decoder
            outcome = "UNEXPECTED"
            unexpected.append(f"{kind}: {type(e).__name__}: {e}")
        else:
            same = (result.shape == truth[source].shape
                    and np.array_equal(result, truth[source]))
            outcome = "decoded" if same or kind not in PAYLOAD_KINDS else "silent"
        finally:
            faulthandler.cancel_dump_traceback_later()
        elapsed = time.monotonic() - began
        slowest = max(slowest, elapsed)
        used = memory.peak_bytes()
        if used is not None:
            peak = max(peak, used)
            if memory_limit and used > memory_limit:
                unexpected.append(f"{kind}: peak memory {used / 2**30:.2f} GiB over the limit")
        outcomes[outcome] += 1
        by_kind[kind][outcome] += 1
    seconds = time.monotonic() - start
    crafted_payload = sum(sum(by_kind[k].values()) for k in PAYLOAD_KINDS)
    summary = {
        "level": level, "mutants": mutants, "seed": seed, "seconds": round(seconds, 2),
        "outcomes": dict(outcomes), "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "crc_fixed": sum(sum(by_kind[k].values()) for k in CRAFTED),
        "silent": outcomes["silent"], "payload_mutants": crafted_payload,
        "slowest_seconds": round(slowest, 3),
        "peak_memory_bytes": peak or None, "unexpected": unexpected[:20],
        "ok": not unexpected,
    }
    log(f"{mutants} mutants ({summary['crc_fixed']} with a valid CRC) through the {level} "
        f"decoder in {seconds:.1f} s; slowest {slowest:.3f} s"
        + (f", peak memory {peak / 2**20:.0f} MiB" if peak else ""))
    for outcome, count in outcomes.most_common():
        log(f"  {outcome:24s} {count}")
    log(f"  silent decodes: {outcomes['silent']} of {crafted_payload} payload mutants")
    for line in unexpected[:20]:
        log(f"  UNEXPECTED {line}")
    return summary


def probe(model, sizes, log=print):
    """Decode valid files claiming each ``(height, width)`` of ``sizes``; time and peak memory.

    The files are honest (random symbols drawn from the model's own
    probabilities, so their payloads justify their sizes): this is the cost a
    hostile file of that claimed size can force.  Returns one dict per size.
    """
    from compression.cli import release_free_memory
    from compression.codec import decode

    rng = np.random.default_rng(0)
    memory, rows = _PeakMemory(), []
    for height, width in sizes:
        data, symbols = honest_file(model, height, width, rng)
        del symbols
        release_free_memory()  # measure this file, not what earlier ones left cached
        memory.reset()
        began = time.monotonic()
        image = decode(model, data, max_pixels=None)
        seconds = time.monotonic() - began
        peak = memory.peak_bytes()
        del image
        row = {"height": height, "width": width, "megapixels": height * width / 1e6,
               "file_bytes": len(data), "seconds": round(seconds, 2),
               "seconds_per_megapixel": round(seconds / (height * width / 1e6), 3),
               "peak_memory_bytes": peak}
        rows.append(row)
        log(f"{width}x{height} ({row['megapixels']:.1f} Mpixel, file {len(data)} bytes): "
            f"{seconds:.1f} s ({row['seconds_per_megapixel']:.2f} s/Mpixel)"
            + (f", peak memory {peak / 2**30:.2f} GiB" if peak else ""))
    return rows


def _default_model(directory):
    from compression.config import CompressionConfig
    from compression.inference import initialize_run, load_model

    config = CompressionConfig(channels=4, width=0.25, crop_height=256, crop_width=256)
    initialize_run(config, directory)
    return load_model(directory)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mutants", type=int, default=10000)
    p.add_argument("--level", choices=("entropy", "full"), default="entropy")
    p.add_argument("--model", default=None,
                   help="run directory for --level full (default: a fresh width-0.25 model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=30.0, help="seconds per mutant")
    p.add_argument("--memory-limit-gib", type=float, default=1.2, help="peak per mutant")
    p.add_argument("--json", default=None, help="also write the summary here")
    p.add_argument("--probe", default=None, metavar="HxW,...",
                   help="instead of fuzzing, decode honest files claiming these sizes with the "
                        "full decoder and report time and peak memory")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    model = None
    if args.level == "full" or args.probe:
        import tempfile

        from compression.inference import load_model

        scratch = tempfile.mkdtemp(prefix="fuzz-model-")
        model = load_model(args.model) if args.model else _default_model(scratch)
    if args.probe:
        sizes = [tuple(int(v) for v in item.lower().split("x")) for item in args.probe.split(",")]
        rows = probe(model, sizes)
        if args.json:
            from compression.files import write_atomic

            write_atomic(args.json, json.dumps(rows, indent=2) + "\n", overwrite=True)
        return 0
    summary = run(args.mutants, args.level, args.seed, model, args.time_limit,
                  int(args.memory_limit_gib * 2**30))
    if args.json:
        from compression.files import write_atomic

        write_atomic(args.json, json.dumps(summary, indent=2) + "\n", overwrite=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
