"""compression.context_net: a learned context model that codes bit-exactly everywhere."""

import dataclasses

import numpy as np
import pytest

from compression import bitstream
from compression.context_net import (
    ACTIVATION_LIMIT,
    FRACTION_BITS,
    LOGIT_BITS,
    ContextNet,
    decode_symbols_with_net,
    encode_symbols_with_net,
    fit_context_net,
    net_bits,
)
from compression.entropy_model import encode_symbols, probabilities_from_counts
from compression.errors import CorruptFileError, ModelLoadError

L = 5


def _maps(count, seed, shape=(12, 16, 4)):
    """Symbol maps with structure: smooth fields, each channel a noisy copy of the one before."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(count):
        field = rng.normal(size=(shape[0] // 4 + 2, shape[1] // 4 + 2))
        smooth = np.kron(field, np.ones((4, 4)))[:shape[0], :shape[1]]
        channels = [smooth]
        for _ in range(shape[2] - 1):
            channels.append(channels[-1] + 0.5 * rng.normal(size=smooth.shape))
        maps.append(np.clip(np.round(np.stack(channels, -1) + 2), 0, L - 1).astype(np.int64))
    return maps


@pytest.fixture(scope="module")
def net():
    return fit_context_net(_maps(24, 0), L, steps=300, width=32, batch=1024)


def test_the_net_predicts_structured_maps_better_than_the_per_channel_model(net):
    train, test = _maps(24, 0), _maps(6, 1)
    counts = np.stack([np.bincount(np.concatenate([m[..., c].ravel() for m in train]),
                                   minlength=L) for c in range(4)]).astype(np.float64)
    per_channel = probabilities_from_counts(counts, 4, L)
    plain = sum(8 * len(encode_symbols(m, per_channel)) for m in test)
    learned = sum(8 * len(encode_symbols_with_net(m, net)) for m in test)
    ideal = sum(net_bits(m, net) for m in test)
    assert learned < 0.8 * plain
    assert ideal <= learned <= ideal + 64 * len(test)  # the coder spends what the net prices


@pytest.mark.parametrize("shape, last_rows", [((12, 16, 4), None), ((12, 16, 4), 5),
                                               ((7, 3, 2), None), ((1, 1, 1), None),
                                               ((2, 9, 3), 1)])
def test_round_trip_is_bit_exact(net, shape, last_rows):
    symbols = np.random.default_rng(shape[0]).integers(0, L, shape)
    data = encode_symbols_with_net(symbols, net, last_rows)
    decoded = decode_symbols_with_net(data, shape, net, last_rows)
    expected = symbols.copy()
    if last_rows is not None:
        expected[last_rows:, :, -1] = 0
    np.testing.assert_array_equal(decoded, expected)
    assert decoded.dtype == np.int32


def test_a_partial_last_channel_costs_only_its_rows(net):
    symbols = _maps(1, 3)[0]
    whole = encode_symbols_with_net(symbols, net)
    part = encode_symbols_with_net(symbols, net, last_rows=4)
    fewer = encode_symbols_with_net(symbols[..., :3], net)
    assert len(fewer) <= len(part) < len(whole)


def test_the_integer_network_is_exact(net):
    """The float64 products equal int64 arithmetic: no rounding a BLAS could reorder."""
    rng = np.random.default_rng(0)
    first = rng.integers(-ACTIVATION_LIMIT, 2 * ACTIVATION_LIMIT, (50, net.hidden_kernel.shape[0]))
    hidden = np.clip(first, 0, ACTIVATION_LIMIT)
    hidden = np.clip((hidden @ net.hidden_kernel + net.hidden_bias) >> FRACTION_BITS, 0,
                     ACTIVATION_LIMIT)
    logits = (hidden @ net.output_kernel[1] + net.output_bias[1]) >> (
        2 * FRACTION_BITS - LOGIT_BITS)
    gaps = np.minimum(logits.max(1, keepdims=True) - logits, len(net.exp_table) - 1)
    weights = net.exp_table[gaps].astype(np.float64)
    expected = weights / weights.sum(1, keepdims=True)
    got = net._probabilities(first, 1)
    np.testing.assert_allclose(got, (1 - 2**-10) * expected + 2**-10 / L, rtol=1e-12)
    assert np.all(got > 0)
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-12)


def test_corrupt_streams_are_refused(net):
    symbols = _maps(1, 4)[0]
    data = encode_symbols_with_net(symbols, net)
    for bad in (data[:-4], data + b"\0\0\0\0", bytes([data[0] ^ 0x40]) + data[1:], data[:3],
                b""):
        with pytest.raises(CorruptFileError):
            decode_symbols_with_net(bad, symbols.shape, net)


def test_bad_arguments_are_named(net):
    with pytest.raises(ValueError, match="channels but the context net"):
        encode_symbols_with_net(np.zeros((2, 2, 5), np.int64), net)
    with pytest.raises(ValueError, match="must lie in"):
        encode_symbols_with_net(np.full((2, 2, 1), L), net)
    with pytest.raises(TypeError, match="ContextNet"):
        encode_symbols_with_net(np.zeros((2, 2, 1), np.int64), {"not": "a net"})
    with pytest.raises(ValueError, match="shape must be"):
        decode_symbols_with_net(b"", (2, 2), net)
    with pytest.raises(ValueError, match="exp_table"):
        dataclasses.replace(net, exp_table=net.exp_table[::-1])
    with pytest.raises(ValueError, match="hidden_kernel must have shape"):
        dataclasses.replace(net, hidden_kernel=net.hidden_kernel[:3])
    with pytest.raises(ValueError, match="fixed-point range"):
        dataclasses.replace(net, embedding=net.embedding * 2**20)
    with pytest.raises(ValueError, match="1 <= D <= 1024"):
        dataclasses.replace(net, channel_bias=np.zeros((4, 2048), np.int64))
    with pytest.raises(ValueError, match="at least one"):
        fit_context_net([], L)


def test_arrays_round_trip(net):
    again = ContextNet.from_arrays(net.arrays().__getitem__)
    symbols = _maps(1, 5)[0]
    assert encode_symbols_with_net(symbols, again) == encode_symbols_with_net(symbols, net)


# -- in the model and its files --------------------------------------------------


@pytest.fixture(scope="module")
def net_export(tiny_run, tiny_data, tmp_path_factory):
    from compression.data import find_examples
    from compression.export import export_model

    out = tmp_path_factory.mktemp("net") / "model"
    images = [ex.image_path for ex in find_examples(tiny_data, "train")]
    card = export_model(tiny_run, out, dtype="float32", entropy_data=images,
                        context_net_steps=60)
    return out, card, images


def test_export_fits_a_net_that_files_are_coded_with(net_export, tiny_run):
    from compression.codec import decode, encode_image, read_symbols
    from compression.image_io import read_image, to_float
    from compression.inference import load_model

    out, card, images = net_export
    assert card["entropy_data"]["context_net_steps"] == 60
    image = np.tile(read_image(images[0]), (2, 2, 1))  # 128x256
    with load_model(out) as model:
        assert model.context_net is not None and model.context_net.channels == 4
        symbols = model.encode(to_float(image))
        result = encode_image(model, image, seed=1)
        header, payload = bitstream.unpack(result.data)
        net_stream = encode_symbols_with_net(symbols, model.context_net)
        plain = encode_symbols(symbols, model.probabilities)
        # The writer keeps the shorter stream (the per-channel one on a tie).
        assert payload == (net_stream if len(net_stream) < len(plain) else plain)
        # A file coded with the net decodes to exactly its symbols through the codec.
        flagged = dataclasses.replace(header, flags=header.flags | bitstream.FLAG_CONTEXT_CODED)
        data = bitstream.pack(flagged, net_stream)
        np.testing.assert_array_equal(read_symbols(model, data)[1], symbols)
        assert decode(model, data).shape == image.shape
        net_fingerprint = model.fingerprint
    # The net is part of the model: without it the fingerprint differs.
    with load_model(tiny_run) as source:
        assert source.context_net is None and source.fingerprint != net_fingerprint


def test_reexport_keeps_the_net(net_export, tmp_path):
    from compression.export import export_model

    out, card, _ = net_export
    assert export_model(out, tmp_path / "again", dtype="float32")["fingerprint"] == \
        card["fingerprint"]


@pytest.mark.parametrize("change, message", [
    (lambda t: {k: v for k, v in t.items() if not k.endswith("context_net/exp_table")},
     "damaged context net"),
    (lambda t: {**t, "entropy_model/context_net/output_bias":
                t["entropy_model/context_net/output_bias"][:2]}, "damaged context net"),
])
def test_a_damaged_net_is_a_clear_load_error(net_export, tmp_path, change, message):
    import shutil

    from compression.inference import load_model
    from tests.test_export import _rewrite_checkpoint

    out, _, _ = net_export
    shutil.copytree(out, tmp_path / "m")
    _rewrite_checkpoint(tmp_path / "m", change)
    with pytest.raises(ModelLoadError, match=message):
        load_model(tmp_path / "m")


def test_cached_distributions_never_go_stale(net):
    """Rate control codes the same channels again; a changed symbol must change the stream."""
    symbols = _maps(1, 6)[0]
    first = encode_symbols_with_net(symbols, net)
    assert encode_symbols_with_net(symbols, net) == first
    changed = symbols.copy()
    changed[3, 4, 0] = (changed[3, 4, 0] + 1) % L  # channel 0: every channel's context
    data = encode_symbols_with_net(changed, net)
    np.testing.assert_array_equal(decode_symbols_with_net(data, changed.shape, net), changed)
    np.testing.assert_array_equal(decode_symbols_with_net(first, symbols.shape, net), symbols)


def _rate_maps(count, seed):
    """Maps whose statistics follow their rate byte: low bytes (high rates) spread their
    symbols, high bytes keep most of them on the middle centre.  Small, so that few
    neighbours can tell the net which kind a map is."""
    rng = np.random.default_rng(seed)
    maps, rates = [], []
    for i in range(count):
        rate = (0, 255)[i % 2]
        spread = 1.5 if rate == 0 else 0.35
        maps.append(np.clip(np.round(rng.normal(2, spread, (3, 4, 1))), 0, L - 1)
                    .astype(np.int64))
        rates.append(rate)
    return maps, rates


@pytest.fixture(scope="module")
def rate_net():
    maps, rates = _rate_maps(200, 0)
    return fit_context_net(maps, L, steps=300, width=32, batch=1024, rates=rates)


def test_a_rate_conditioned_net_codes_each_rate_with_its_statistics(rate_net):
    maps, rates = _rate_maps(200, 0)
    plain = fit_context_net(maps, L, steps=300, width=32, batch=1024)
    assert rate_net.rate_conditioned and not plain.rate_conditioned
    test, test_rates = _rate_maps(40, 1)
    conditioned = sum(net_bits(m, rate_net, r) for m, r in zip(test, test_rates, strict=True))
    mixed = sum(net_bits(m, plain) for m in test)
    assert conditioned < 0.95 * mixed  # measured 0.92
    for m, r in zip(test[:2], test_rates[:2], strict=True):
        data = encode_symbols_with_net(m, rate_net, rate=r)
        np.testing.assert_array_equal(decode_symbols_with_net(data, m.shape, rate_net, rate=r), m)
        # Another band's distributions do not decode the stream.
        other = 255 - r
        try:
            wrong = decode_symbols_with_net(data, m.shape, rate_net, rate=other)
        except CorruptFileError:
            wrong = None
        assert wrong is None or not np.array_equal(wrong, m)
    with pytest.raises(ValueError, match="pass the file's rate-position byte"):
        encode_symbols_with_net(test[0], rate_net)
    with pytest.raises(ValueError, match="one rate-position byte"):
        fit_context_net(maps, L, steps=1, rates=rates[:-1])


def test_rate_bias_is_stored_only_by_conditioned_nets(net, rate_net):
    assert not any(k.endswith("rate_bias") for k in net.arrays())
    stored = rate_net.arrays()
    assert stored["entropy_model/context_net/rate_bias"].shape == (16, 32)
    again = ContextNet.from_arrays(stored.__getitem__, has=stored.__contains__)
    m = _rate_maps(1, 2)[0][0]
    assert net_bits(m, again, 255) == net_bits(m, rate_net, 255)
    with pytest.raises(ValueError, match="rate_bias must have shape"):
        dataclasses.replace(rate_net, rate_bias=rate_net.rate_bias[:3])
