"""compression: GAN-based extreme image compression (Agustsson et al. 2018).

Data flow, one module per stage::

    image -> encoder -> quantizer -> (+ noisegen noise) -> decoder -> image
                           |                                  ^
                           +--> entropy_model -> bitstream ---+   (codec)
                                (context_model)

``config`` describes a model, ``model`` assembles the graph with the
``discriminator`` and ``losses``, ``train`` trains it on ``data``,
``inference`` loads a run, ``codec`` writes and reads ``.gcz`` files, with
``rate_control`` choosing how many channels a file codes (and, for a
rate-adaptive model, its rate position: ``gain``'s gain units scale the
bottleneck before and after the quantiser); ``context_model``
codes the symbols in context when the model has a context table (``export``
fits one), ``refine`` optimises one image's bottleneck through the decoder
before it is coded (``encode --refine``), and ``correction`` is the colour
correction every file carries, which the decoder applies to its output.
"""

import importlib

# Public name -> (module, attribute).  Submodules are imported on first use, so
# `import compression` is instant and the CLI can configure TensorFlow before
# TensorFlow is imported.
_EXPORTS = {
    "BitstreamError": ("errors", "BitstreamError"),
    "CompressionConfig": ("config", "CompressionConfig"),
    "CompressionError": ("errors", "CompressionError"),
    "CompressionModel": ("inference", "CompressionModel"),
    "ConfigError": ("errors", "ConfigError"),
    "CorruptFileError": ("errors", "CorruptFileError"),
    "DataError": ("errors", "DataError"),
    "EncodeResult": ("codec", "EncodeResult"),
    "Header": ("bitstream", "Header"),
    "ImageReadError": ("errors", "ImageReadError"),
    "ImageTooLargeError": ("errors", "ImageTooLargeError"),
    "ModelLoadError": ("errors", "ModelLoadError"),
    "ModelMismatchError": ("errors", "ModelMismatchError"),
    "NotAGczFileError": ("errors", "NotAGczFileError"),
    "RateError": ("errors", "RateError"),
    "TrainResult": ("train", "TrainResult"),
    "TrainingGraph": ("model", "TrainingGraph"),
    "TruncatedFileError": ("errors", "TruncatedFileError"),
    "UnsupportedVersionError": ("errors", "UnsupportedVersionError"),
    "build_training_graph": ("model", "build_training_graph"),
    "channel_choices": ("rate_control", "channel_choices"),
    "choose_channels": ("rate_control", "choose_channels"),
    "highest_rate_position": ("rate_control", "highest_rate_position"),
    "gained": ("gain", "gained"),
    "position_of": ("gain", "position_of"),
    "compare": ("compare", "compare"),
    "crop_to": ("image_io", "crop_to"),
    "decode": ("codec", "decode"),
    "decode_image": ("codec", "decode_image"),
    "decode_symbols": ("entropy_model", "decode_symbols"),
    "decode_symbols_in_context": ("context_model", "decode_symbols_in_context"),
    "context_counts": ("context_model", "context_counts"),
    "context_probabilities": ("context_model", "context_probabilities"),
    "encode_symbols_in_context": ("context_model", "encode_symbols_in_context"),
    "ContextNet": ("context_net", "ContextNet"),
    "decode_symbols_with_net": ("context_net", "decode_symbols_with_net"),
    "encode_symbols_with_net": ("context_net", "encode_symbols_with_net"),
    "fit_context_net": ("context_net", "fit_context_net"),
    "fit_entropy_model": ("export", "fit_entropy_model"),
    "decoder": ("decoder", "decoder"),
    "dequantize": ("quantizer", "dequantize"),
    "discriminator_loss": ("losses", "discriminator_loss"),
    "distortion_loss": ("losses", "distortion_loss"),
    "encode": ("codec", "encode"),
    "encode_graph": ("model", "encode"),
    "encode_image": ("codec", "encode_image"),
    "encode_symbols": ("entropy_model", "encode_symbols"),
    "encoder": ("encoder", "encoder"),
    "feature_matching_loss": ("losses", "feature_matching_loss"),
    "find_examples": ("data", "find_examples"),
    "fingerprint": ("bitstream", "fingerprint"),
    "fingerprint_hex": ("bitstream", "fingerprint_hex"),
    "evaluate": ("evaluate", "evaluate"),
    "export_model": ("export", "export_model"),
    "generator_adversarial_loss": ("losses", "generator_adversarial_loss"),
    "initialize_run": ("inference", "initialize_run"),
    "load_model": ("inference", "load_model"),
    "make_dataset": ("data", "make_dataset"),
    "ms_ssim": ("metrics", "ms_ssim"),
    "multiscale_discriminator": ("discriminator", "multiscale_discriminator"),
    "one_hot_labels": ("semantic", "one_hot_labels"),
    "pack": ("bitstream", "pack"),
    "pad_to_multiple": ("image_io", "pad_to_multiple"),
    "probabilities_from_counts": ("entropy_model", "probabilities_from_counts"),
    "refine_symbols": ("refine", "refine_symbols"),
    "fit_correction": ("correction", "fit_correction"),
    "apply_correction": ("correction", "apply_correction"),
    "RefineResult": ("refine", "RefineResult"),
    "psnr": ("metrics", "psnr"),
    "chroma_error": ("metrics", "chroma_error"),
    "chroma_speckle": ("metrics", "chroma_speckle"),
    "quantize": ("quantizer", "quantize"),
    "read_image": ("image_io", "read_image"),
    "read_symbols": ("codec", "read_symbols"),
    "reconstruct_from_symbols": ("model", "reconstruct_from_symbols"),
    "semantic_encoder": ("semantic", "semantic_encoder"),
    "symbol_counts": ("quantizer", "symbol_counts"),
    "synthesize": ("model", "synthesize"),
    "train": ("train", "train"),
    "uniform_probabilities": ("entropy_model", "uniform_probabilities"),
    "unpack": ("bitstream", "unpack"),
    "write_image": ("image_io", "write_image"),
    "write_synthetic_cityscapes": ("data", "write_synthetic_cityscapes"),
    "sample_masks": ("selective", "sample_masks"),
    "apply_mask": ("selective", "apply_mask"),
    "mask_from_labels": ("mask", "mask_from_labels"),
    "class_ids": ("mask", "class_ids"),
    "encode_mask_bitmap": ("mask", "encode_mask_bitmap"),
    "decode_mask": ("mask", "decode_mask"),
}


__all__ = [
    "BitstreamError", "CompressionConfig", "CompressionError", "CompressionModel",
    "ConfigError", "CorruptFileError", "DataError", "EncodeResult", "Header",
    "ImageReadError", "ImageTooLargeError", "ModelLoadError", "ModelMismatchError",
    "NotAGczFileError", "RateError",
    "TrainResult", "TrainingGraph", "TruncatedFileError", "UnsupportedVersionError",
    "build_training_graph", "channel_choices", "choose_channels", "chroma_error",
    "chroma_speckle", "compare",
    "gained", "highest_rate_position", "position_of",
    "crop_to",
    "context_counts", "context_probabilities",
    "ContextNet", "decode_symbols_with_net", "encode_symbols_with_net", "fit_context_net",
    "decode", "decode_image", "decode_symbols", "decode_symbols_in_context",
    "decoder", "dequantize", "discriminator_loss", "distortion_loss", "encode",
    "encode_graph", "encode_image", "encode_symbols", "encode_symbols_in_context", "encoder",
    "evaluate", "export_model", "fit_correction", "apply_correction", "fit_entropy_model",
    "feature_matching_loss", "find_examples", "fingerprint", "fingerprint_hex",
    "generator_adversarial_loss", "initialize_run", "load_model", "make_dataset", "ms_ssim",
    "multiscale_discriminator", "one_hot_labels", "pack", "pad_to_multiple",
    "probabilities_from_counts", "psnr", "quantize", "read_image", "read_symbols",
    "reconstruct_from_symbols", "refine_symbols", "RefineResult", "semantic_encoder",
    "symbol_counts", "synthesize",
    "train", "uniform_probabilities", "unpack", "write_image",
    "write_synthetic_cityscapes",
    "sample_masks", "apply_mask", "mask_from_labels", "class_ids", "encode_mask_bitmap",
    "decode_mask",
]


def __getattr__(name):
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'compression' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"compression.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
