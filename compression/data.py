"""Training and validation images in the Cityscapes folder layout.

Layout read by :func:`find_examples` (``<ext>`` is png, jpg or jpeg in any case)::

    ROOT/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.<ext>     RGB image
    ROOT/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png        8-bit class ids (optional)

A root without a ``leftImg8bit/`` folder is read as a plain folder of images
(any nesting, no labels): ``ROOT/<split>`` when that folder exists, else ROOT.

:func:`make_dataset` turns a list of :class:`Example` into a ``tf.data``
pipeline of ``{"image": float32 [B, H, W, 3] in [-1, 1], "labels": int32
[B, H, W]}`` batches.  Files are decoded with Pillow inside
``tf.numpy_function``, so the same pipeline runs eagerly and inside a TF1
``tf.Graph`` (one-shot or initializable iterators).

Reproducibility.  The training stream is a pure function of ``seed``: global
example ``i`` is position ``i % N`` of epoch ``i // N``, whose order is
``numpy.random.default_rng([seed, epoch]).permutation(N)``; its crop window and
flip (and, for an image that holds the crop only turned a quarter, the turn's
direction) come from ``default_rng([seed, 1, i])``.  Batch ``s`` is therefore made of
global examples ``s*B .. s*B+B-1``, and ``start_step=s`` starts there without
decoding anything that comes before.

Unreadable files never stop a run: each is reported once with a
:class:`SkippedFileWarning` and tallied in a :class:`SkipCounter`
(``dataset.skip_counter``).  Training replaces the example by the next
readable one in the stream, which keeps batch boundaries and therefore resumes
exact; evaluation drops it.  Label ids ``>= num_classes`` are a configuration
mistake, not file damage, so they stop the pipeline with a message that names
the file (see :func:`make_dataset`).

Orientation.  A photograph that holds the crop only turned a quarter (a
portrait photo and a landscape crop, or the reverse) is turned to fit rather
than skipped: a plain folder of one's own photos mixes both, and a crop of
either orientation then uses all of them (BSDS500: 30% portrait).
"""

import dataclasses
import os
import threading
import warnings
from types import MappingProxyType

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from compression.errors import DataError

__all__ = [
    "Example",
    "SkipCounter",
    "SkippedFileWarning",
    "find_examples",
    "make_dataset",
    "whole_window",
    "write_synthetic_cityscapes",
    "data_error_from",
    "IMAGE_SUFFIX",
    "LABEL_SUFFIX",
]

IMAGE_DIR = "leftImg8bit"
LABEL_DIR = "gtFine"
IMAGE_SUFFIX = "_leftImg8bit"
LABEL_SUFFIX = "_gtFine_labelIds.png"
# Cityscapes mode follows the dataset's own naming; a plain folder of user
# photos may also hold the other formats Pillow reads well.
CITYSCAPES_EXTENSIONS = (".png", ".jpg", ".jpeg")
PLAIN_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# A plain folder's held-out subfolders: its training images are everything
# else, so images kept aside for validation are never trained on.
HELD_OUT_SPLITS = ("val", "test")

# How many examples make_dataset opens up front to turn the common mistakes
# (crop larger than the images, too few --classes) into a DataError before
# tf.data starts; later files are handled inside the pipeline.
EAGER_CHECKS = 4
# Whole-image evaluation (make_dataset(crop_size=None)): windows are cut to
# multiples of the encoder's stride and capped per side; see whole_window.
WHOLE_MULTIPLE = 16
WHOLE_MAX_SIDE = 1024

_DEFAULT_SPLITS = MappingProxyType({"train": 4, "val": 2})


@dataclasses.dataclass(frozen=True)
class Example:
    """One image file and, when the data has one, its label map file."""

    image_path: str
    label_path: str | None = None


class SkippedFileWarning(UserWarning):
    """A file could not be used (corrupt, unreadable, too small) and was skipped."""


class SkipCounter:
    """Thread-safe tally of examples a pipeline skipped.

    Attributes:
      count: number of times an example was skipped (a bad file met in
        several epochs counts each time).
      reasons: ``{path: reason}`` for every distinct bad file, in the order met.

    A file recorded here is not decoded again: the next time the pipeline
    meets it, it is skipped at once.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.count = 0
        self.reasons = {}

    def __int__(self):
        return self.count

    def __repr__(self):
        return f"SkipCounter(count={self.count}, files={len(self.reasons)})"

    @property
    def paths(self):
        """Distinct bad files, in the order they were met."""
        with self._lock:
            return list(self.reasons)

    def is_bad(self, path):
        with self._lock:
            return path in self.reasons

    def record(self, path, reason):
        """Count one skip of ``path``; warn the first time this file is seen."""
        with self._lock:
            self.count += 1
            first = path not in self.reasons
            if first:
                self.reasons[path] = reason
        if first:
            warnings.warn(f"skipping {path}: {reason}", SkippedFileWarning, stacklevel=2)


# --------------------------------------------------------------------------- discovery


def _walk_files(top, extensions, skip=()):
    """Relative POSIX paths of files under ``top`` whose extension (any case) is listed,
    leaving out ``top``'s subfolders named in ``skip``."""
    found = []
    # followlinks: datasets are often assembled from symlinked city folders.
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        # Hidden entries are tool debris (.ipynb_checkpoints, macOS "._x.jpg"
        # resource forks) that would otherwise show up as corrupt images.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not (dirpath == top and d in skip))
        for name in filenames:
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in extensions:
                rel = os.path.relpath(os.path.join(dirpath, name), top)
                found.append(rel.replace(os.sep, "/"))
    return sorted(found)


def _patterns(top, suffix, extensions, nested):
    middle = "**" if nested else "*"
    return [os.path.join(top, middle, f"*{suffix}{ext}") for ext in extensions]


def find_examples(root, split="train", require_labels=False):
    """List the images (and label maps) of ``split`` under ``root``, sorted by path.

    Args:
      root: a Cityscapes-style tree (``root/leftImg8bit/<split>/...``) or a
        plain folder of images.
      split: ``"train"``, ``"val"``, ...; in plain-folder mode ``root/<split>``
        is used when it exists; otherwise ``"train"`` is ``root`` itself
        without its ``val/`` and ``test/`` subfolders (held-out images are
        never trained on), and any other split is missing (DataError).
      require_labels: raise unless every image has its ``gtFine`` label map.

    Returns:
      ``list[Example]`` sorted by the image's path relative to the split
      folder, so the order is the same on every machine.  ``label_path`` is
      ``None`` where no label file exists.

    Raises:
      DataError: ``root`` is missing, no image matches, or ``require_labels``
        is set and label maps are missing.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        what = "is not a directory" if os.path.exists(root) else "does not exist"
        raise DataError(
            f"data directory {root!r} {what}; point --data at a Cityscapes-style tree "
            f"({IMAGE_DIR}/<split>/<city>/<name>{IMAGE_SUFFIX}.png) or a folder of images"
        )
    image_root = os.path.join(root, IMAGE_DIR)
    if os.path.isdir(image_root):
        return _find_cityscapes(root, split, require_labels)
    return _find_plain(root, split, require_labels)


def label_path_for(image_path):
    """The Cityscapes label map of an image: ``.../leftImg8bit/S/C/X_leftImg8bit.png`` ->
    ``.../gtFine/S/C/X_gtFine_labelIds.png``; None for a path not laid out that way."""
    parts = os.path.normpath(os.fspath(image_path)).split(os.sep)
    stem, _ = os.path.splitext(parts[-1])
    if IMAGE_DIR not in parts[:-1] or not stem.endswith(IMAGE_SUFFIX):
        return None
    at = len(parts) - 1 - parts[::-1].index(IMAGE_DIR)
    return os.sep.join(parts[:at] + [LABEL_DIR] + parts[at + 1:-1]
                       + [stem[: -len(IMAGE_SUFFIX)] + LABEL_SUFFIX])


def _find_cityscapes(root, split, require_labels):
    split_dir = os.path.join(root, IMAGE_DIR, split)
    rels = []
    if os.path.isdir(split_dir):
        rels = [r for r in _walk_files(split_dir, CITYSCAPES_EXTENSIONS)
                if os.path.splitext(r)[0].endswith(IMAGE_SUFFIX)]
    if not rels:
        splits = sorted(d for d in os.listdir(os.path.join(root, IMAGE_DIR))
                        if os.path.isdir(os.path.join(root, IMAGE_DIR, d)))
        patterns = _patterns(split_dir, IMAGE_SUFFIX, CITYSCAPES_EXTENSIONS, nested=True)
        raise DataError(
            f"no {split!r} images found under {root!r}; searched {', '.join(patterns)} "
            f"(extensions in any case; splits present: {splits or 'none'}); put the images "
            f"there or pass the split that holds them"
        )
    examples = []
    missing = []
    for rel in rels:
        stem = os.path.splitext(rel)[0][: -len(IMAGE_SUFFIX)]
        label = os.path.join(root, LABEL_DIR, split, *(stem + LABEL_SUFFIX).split("/"))
        image = os.path.join(split_dir, *rel.split("/"))
        if os.path.isfile(label):
            examples.append(Example(image, label))
        else:
            examples.append(Example(image, None))
            missing.append(label)
    if require_labels and missing:
        raise DataError(
            f"{len(missing)} of {len(examples)} {split!r} images under {root!r} have no label "
            f"map (expected for example {missing[0]!r}); add the {LABEL_DIR} files or train "
            f"without semantic maps (--classes 0)"
        )
    return examples


def _find_plain(root, split, require_labels):
    top = os.path.join(root, split) if split and os.path.isdir(os.path.join(root, split)) else root
    if top == root and split and split != "train":
        raise DataError(
            f"{root!r} is a plain folder of images with no {split}/ subfolder; "
            f"put the images to hold out for {split} in {os.path.join(root, split)!r}")
    if require_labels:
        raise DataError(
            f"{root!r} has no {IMAGE_DIR}/ folder, so it is read as a plain folder of images, "
            f"which has no label maps; use the Cityscapes layout ({IMAGE_DIR}/ and "
            f"{LABEL_DIR}/) for semantic maps, or train without them (--classes 0)"
        )
    rels = _walk_files(top, PLAIN_EXTENSIONS, skip=HELD_OUT_SPLITS if top == root else ())
    if not rels:
        patterns = _patterns(top, "", PLAIN_EXTENSIONS, nested=True)
        raise DataError(
            f"no images found in {top!r} (no {IMAGE_DIR}/ folder, so it was read as a plain "
            f"folder of images); searched {', '.join(patterns)} (extensions in any case)"
        )
    return [Example(os.path.join(top, *rel.split("/")), None) for rel in rels]


# --------------------------------------------------------------------------- decoding


class _BadFile(Exception):
    """A file that cannot be used; the pipeline skips it."""


def _open_image(path, resize):
    """Decode ``path`` to uint8 ``[H, W, 3]`` RGB, resized to ``resize=(h, w)`` if given."""
    with Image.open(path) as img:
        if resize is not None and img.format == "JPEG":
            # Let libjpeg decode at a reduced scale (never below the target).
            img.draft("RGB", (resize[1], resize[0]))
        # Convert before resizing: Pillow resizes palette images with nearest
        # neighbour whatever filter is asked for.  Alpha is dropped.
        rgb = img.convert("RGB") if img.mode != "RGB" else img
        if resize is not None and rgb.size != (resize[1], resize[0]):
            rgb = rgb.resize((resize[1], resize[0]), Image.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def _open_labels(path, resize):
    """Decode a label map to ``[H, W]`` ids (uint8 or wider), nearest-neighbour resized."""
    with Image.open(path) as img:
        # "P" stores ids as palette indices, which np.asarray returns as-is;
        # colour label images are not ids at all.
        if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
            raise _BadFile(f"label map has mode {img.mode!r}; expected single-channel class ids")
        if resize is not None and img.size != (resize[1], resize[0]):
            img = img.resize((resize[1], resize[0]), Image.NEAREST)
        return np.asarray(img)


def _label_range_error(path, max_id, num_classes):
    return DataError(
        f"label map {path!r} holds class id {max_id}, but num_classes is {num_classes} "
        f"(ids must be 0..{num_classes - 1}); set --classes to at least {max_id + 1}"
    )


def _size_text(hw):
    return f"{hw[0]}x{hw[1]}"


class _Loader:
    """The Python side of the pipeline: example index -> cropped uint8 arrays.

    Training: ``train_item(i)`` returns the crop of global example ``i``
    (image ``[h, w, 3]`` and, with labels, ``[h, w]`` uint8).  Evaluation:
    ``eval_item(j)`` returns the centre crop of ``examples[j]`` (with
    ``crop=None``, its whole-image window: :func:`whole_window`) plus an ``ok``
    flag that is False for a skipped file.
    """

    def __init__(self, examples, crop, resize, num_classes, seed, counter):
        self.examples = list(examples)
        self.crop = crop
        # The smallest usable image: the crop, or for whole images one stride.
        self.least = crop or (WHOLE_MULTIPLE, WHOLE_MULTIPLE)
        self.resize = resize
        self.num_classes = num_classes
        self.seed = seed
        self.counter = counter
        self._orders = {}
        self._orders_lock = threading.Lock()

    def _permutation(self, epoch):
        """Example order of ``epoch``: ``default_rng([seed, epoch]).permutation(N)``."""
        with self._orders_lock:
            order = self._orders.get(epoch)
            if order is None:
                order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
                # Parallel decoders straddle at most two epochs; keep a few.
                if len(self._orders) >= 4:
                    self._orders.pop(min(self._orders))
                self._orders[epoch] = order
            return order

    def example_at(self, i):
        """The example at global training position ``i``."""
        n = len(self.examples)
        return self.examples[int(self._permutation(i // n)[i % n])]

    def _load(self, ex):
        """Decoded, resized arrays of ``ex`` -> ``(image, labels, turned)``.

        ``turned``: the image (and labels) were turned a quarter, because they
        hold the crop only that way.  Raises _BadFile for an unusable file.
        """
        try:
            image = _open_image(ex.image_path, self.resize)
        except _BadFile:
            raise
        except Exception as e:  # Pillow raises OSError, ValueError, SyntaxError, ...
            raise _BadFile(f"cannot read image ({type(e).__name__}: {e})") from e
        h, w = image.shape[:2]
        if not _holds_either_way((h, w), self.least):
            raise _BadFile(f"image is {_size_text((h, w))} (height x width), smaller than "
                           f"the crop {_size_text(self.least)} in either orientation")
        labels = None
        if self.num_classes:
            try:
                labels = _open_labels(ex.label_path, self.resize)
            except _BadFile as e:
                raise _BadFile(f"{ex.label_path}: {e}") from e
            except Exception as e:
                raise _BadFile(f"cannot read label map {ex.label_path!r} "
                               f"({type(e).__name__}: {e})") from e
            if labels.shape != (h, w):
                raise _BadFile(f"label map {ex.label_path!r} is {_size_text(labels.shape)}, "
                               f"image is {_size_text((h, w))}")
            # Outside the try: a wrong --classes must stop the run, not skip files.
            max_id = int(labels.max())
            if max_id >= self.num_classes:
                raise _label_range_error(ex.label_path, max_id, self.num_classes)
            labels = labels.astype(np.uint8)
        turned = self.crop is not None and not _holds((h, w), self.crop)
        if turned:
            image, labels = _quarter_turn(image, labels)
        return image, labels, turned

    def _outputs(self, image, labels, y, x, flip, window, half_turn=False):
        h, w = window
        out = [image[y:y + h, x:x + w]]
        if labels is not None:
            out.append(labels[y:y + h, x:x + w])
        if flip:
            out = [a[:, ::-1] for a in out]
        if half_turn:
            out = [a[::-1, ::-1] for a in out]
        return [np.ascontiguousarray(a) for a in out]

    def train_item(self, index):
        return _guard(self._train_item, int(index))

    def _train_item(self, i):
        n = len(self.examples)
        # 2n positions always hold a whole epoch, so every file is tried once
        # before giving up, wherever the window starts.
        for k in range(2 * n):
            ex = self.example_at(i + k)
            if self.counter.is_bad(ex.image_path):
                self.counter.record(ex.image_path, "")
                continue
            try:
                image, labels, turned = self._load(ex)
            except _BadFile as e:
                self.counter.record(ex.image_path, str(e))
                continue
            # The window depends on the global index, not on the file, so a
            # substituted example keeps the stream a function of (seed, i).
            rng = np.random.default_rng([self.seed, 1, i])
            y = int(rng.integers(0, image.shape[0] - self.crop[0] + 1))
            x = int(rng.integers(0, image.shape[1] - self.crop[1] + 1))
            flip = bool(rng.random() < 0.5)
            # Drawn last, and only for turned images, so that every other
            # example's window and flip are what they were before turning.
            half_turn = turned and bool(rng.random() < 0.5)
            return self._outputs(image, labels, y, x, flip, self.crop, half_turn)
        raise DataError(f"none of the {n} training images could be used; see the "
                        f"warnings above for why (first: {self.counter.paths[:1]})")

    def eval_item(self, index):
        return _guard(self._eval_item, int(index))

    def _eval_item(self, j):
        ex = self.examples[j]
        try:
            if self.counter.is_bad(ex.image_path):
                raise _BadFile("")
            image, labels, _ = self._load(ex)
        except _BadFile as e:
            self.counter.record(ex.image_path, str(e))
            h, w = self.least  # a placeholder the pipeline filters out
            out = [np.zeros((h, w, 3), np.uint8)]
            if self.num_classes:
                out.append(np.zeros((h, w), np.uint8))
            return out + [np.bool_(False)]
        h, w = self.crop or whole_window(*image.shape[:2])
        y = (image.shape[0] - h) // 2
        x = (image.shape[1] - w) // 2
        return self._outputs(image, labels, y, x, False, (h, w)) + [np.bool_(True)]


def _holds(shape, window):
    """Whether an image of ``shape`` (``[h, w, ...]``) holds a ``window`` as it stands."""
    return shape[0] >= window[0] and shape[1] >= window[1]


def _holds_either_way(shape, window):
    """Whether an image of ``shape`` holds ``window`` as it stands or turned a quarter."""
    return _holds(shape, window) or _holds(shape[1::-1], window)


def _quarter_turn(image, labels):
    """``image`` (and ``labels``) turned a quarter anticlockwise: ``[h, w]`` -> ``[w, h]``."""
    return np.rot90(image), None if labels is None else np.rot90(labels)


def whole_window(height, width):
    """The ``(h, w)`` an evaluation of a whole ``height x width`` image uses.

    The largest centred window whose sides are multiples of
    ``WHOLE_MULTIPLE`` (the encoder's stride, so no padding is needed) and at
    most ``WHOLE_MAX_SIDE`` (so a validation pass of large photographs stays
    within an inference's memory): 352x480 of a 360x480 CamVid frame,
    320x480 of a 321x481 BSDS500 photograph.
    """
    return tuple(min(WHOLE_MAX_SIDE, s - s % WHOLE_MULTIPLE) for s in (height, width))


def data_error_from(error):
    """The :class:`DataError` behind a TensorFlow error from this pipeline, or None.

    A DataError raised while iterating (a label id ``>= num_classes`` in a
    file past the eager checks) reaches the caller as
    ``tf.errors.InvalidArgumentError`` with the Python traceback in its
    message; this recovers the one-line message so a command line can print
    it cleanly::

        except tf.errors.InvalidArgumentError as e:
            raise (data_error_from(e) or e) from e
    """
    marker = "DataError: "
    text = str(error)
    at = text.find(marker)
    if at < 0:
        return None
    return DataError(text[at + len(marker):].split("\n", 1)[0].strip())


def _guard(fn, arg):
    """Call ``fn(arg)``, keeping exceptions from ending the dataset silently.

    ``tf.numpy_function`` turns IndexError and StopIteration into
    OutOfRangeError, which tf.data reads as a normal end of data; a bug would
    then look like a short epoch.  Re-raise them as RuntimeError instead.
    """
    try:
        return fn(arg)
    except (IndexError, StopIteration) as e:
        raise RuntimeError(f"data pipeline error: {type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------- dataset


def _pair(value, name):
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a pair (height, width) of integers, "
                        f"got {value!r}") from None
    if a < 1 or b < 1:
        raise DataError(f"{name} must be positive, got {value!r}")
    return a, b


def _eager_checks(examples, crop, resize, num_classes):
    """Open the first few examples and raise DataError for the common mistakes.

    Only image headers are read for the size check; label maps are decoded
    (small 8-bit PNGs) to check their ids.  Unreadable files are left to the
    pipeline, which skips them with a warning.
    """
    if resize is not None and (resize[0] < crop[0] or resize[1] < crop[1]):
        raise DataError(
            f"--resize {_size_text(resize)} is smaller than the crop {_size_text(crop)} "
            "(height x width); use a smaller --crop or a larger --resize"
        )
    # One rule for images smaller than the crop, wherever they are: they are
    # skipped with a warning like any unusable file.  Only when every image
    # checked here is smaller is it the crop that is wrong, and that stops
    # the run before it starts.
    sizes = []
    for ex in examples[:EAGER_CHECKS]:
        if resize is None:
            try:
                with Image.open(ex.image_path) as img:
                    w, h = img.size
                sizes.append((ex.image_path, h, w))
            except Exception:
                pass
        if num_classes:
            try:
                labels = _open_labels(ex.label_path, None)
            except Exception:
                continue
            max_id = int(labels.max())
            if max_id >= num_classes:
                raise _label_range_error(ex.label_path, max_id, num_classes)
    if sizes and not any(_holds_either_way((h, w), crop) for _, h, w in sizes):
        path, h, w = sizes[0]
        raise DataError(
            f"the crop {_size_text(crop)} (height x width) is larger than every one of the "
            f"first {len(sizes)} training images (e.g. {path!r} is {_size_text((h, w))}); "
            f"use a smaller --crop (at most {_size_text((h, w))}) or --resize the images "
            "to at least the crop size"
        )


def _set_shapes(tensors, shapes):
    """Give ``numpy_function`` outputs their static shapes (it returns unknown ones)."""
    for t, shape in zip(tensors, shapes, strict=False):
        t.set_shape(shape)
    return tensors


def make_dataset(examples, *, crop_size, batch_size, training, num_classes=0, seed=0,
                 start_step=0, resize=None, num_parallel_calls=tf.data.AUTOTUNE,
                 skip_counter=None):
    """Build the input pipeline for ``examples``.

    Args:
      examples: ``list[Example]``, e.g. from :func:`find_examples`.
      crop_size: ``(h, w)`` of the crops.  Training takes a random window and
        a random horizontal flip (the same for image and labels); evaluation
        takes the centre window (the whole image when the sizes are equal).
        An image that holds the crop only turned a quarter is turned to fit
        (training: clockwise or anticlockwise at random), not skipped.
        None (evaluation only, ``batch_size`` 1): each image nearly whole, in
        its own :func:`whole_window`, so figures are those of the sizes files
        code (a model trained on small crops can score very differently on
        whole frames: its instance norms see other statistics).
      batch_size: examples per batch.
      training: True: an infinite, shuffled stream of full batches (see the
        module docstring for how it depends on ``seed``).  False: one pass
        over ``examples`` in order, the last batch possibly smaller.
      num_classes: 0 for no labels; otherwise every example needs a
        ``label_path`` and ids must be ``< num_classes``.
      seed: non-negative int; the training order and crops depend on it only.
      start_step: training starts at batch ``start_step`` exactly as if that
        many batches had been read (nothing before it is decoded).
      resize: optional ``(h, w)`` every image is resampled to before cropping
        (bilinear; labels nearest neighbour).
      num_parallel_calls: parallel decoders (``tf.data.AUTOTUNE`` by default).
      skip_counter: a :class:`SkipCounter` to tally skipped files in; a new
        one is made when None.

    Returns:
      A ``tf.data.Dataset`` of dicts ``{"image": float32 [B, h, w, 3] in
      [-1, 1], "labels": int32 [B, h, w]}`` ("labels" only when
      ``num_classes > 0``); ``B`` is static for training.  The counter is
      attached as ``dataset.skip_counter``.

    Raises:
      DataError: no examples, bad arguments, labels missing, or the first
        examples are smaller than the crop or hold ids ``>= num_classes``.
        A later label map with ids ``>= num_classes`` stops iteration with a
        ``tf.errors.InvalidArgumentError`` whose message is the same
        DataError text (a wrong ``--classes`` must not be skipped silently).
    """
    examples = list(examples)
    if not examples:
        raise DataError("no examples to build a dataset from")
    if crop_size is None and (training or int(batch_size) != 1):
        raise DataError("crop_size=None (whole images, each its own size) is for "
                        "evaluation with batch_size 1; give a crop size to train or batch")
    crop = None if crop_size is None else _pair(crop_size, "crop_size")
    resize = None if resize is None else _pair(resize, "resize")
    if int(batch_size) < 1:
        raise DataError(f"batch_size must be positive, got {batch_size!r}")
    if int(seed) < 0 or int(start_step) < 0 or int(num_classes) < 0:
        raise DataError(f"seed, start_step and num_classes must be >= 0, got "
                        f"{seed!r}, {start_step!r}, {num_classes!r}")
    batch_size, seed, start_step, num_classes = (
        int(batch_size), int(seed), int(start_step), int(num_classes))
    if num_classes:
        unlabelled = [ex for ex in examples if ex.label_path is None]
        if unlabelled:
            raise DataError(
                f"num_classes={num_classes} needs a label map for every image, but "
                f"{len(unlabelled)} of {len(examples)} have none (first: "
                f"{unlabelled[0].image_path!r}); add the {LABEL_DIR} files or use --classes 0"
            )
    counter = skip_counter if skip_counter is not None else SkipCounter()
    loader = _Loader(examples, crop, resize, num_classes, seed, counter)
    _eager_checks(examples, loader.least, resize, num_classes)
    h, w = crop or (None, None)
    types = [tf.uint8, tf.uint8] if num_classes else [tf.uint8]
    shapes = [(h, w, 3), (h, w)][: len(types)]

    # The mapped functions hold no Python control flow on tensors, so
    # autograph has nothing to convert (and cannot parse lambdas anyway).
    plain = tf.autograph.experimental.do_not_convert

    @plain
    def load_train(index):
        out = tf.numpy_function(loader.train_item, [index], types, name="load_example")
        return tuple(_set_shapes(out, shapes))

    @plain
    def load_eval(index):
        out = tf.numpy_function(loader.eval_item, [index], types + [tf.bool],
                                name="load_example")
        return tuple(_set_shapes(out, shapes))

    @plain
    def is_ok(*element):
        return element[-1]

    @plain
    def drop_flag(*element):
        return element[:-1]

    @plain
    def to_model_inputs(image, labels=None):
        # Cast after batching: one vectorised op per batch instead of per image.
        out = {"image": tf.cast(image, tf.float32) * (1.0 / 127.5) - 1.0}
        if labels is not None:
            out["labels"] = tf.cast(labels, tf.int32)
        return out

    if training:
        first = start_step * batch_size
        ds = tf.data.Dataset.range(first, np.iinfo(np.int64).max)
        ds = ds.map(load_train, num_parallel_calls=num_parallel_calls, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=True)
    else:
        ds = tf.data.Dataset.range(len(examples))
        ds = ds.map(load_eval, num_parallel_calls=num_parallel_calls, deterministic=True)
        ds = ds.filter(is_ok).map(drop_flag)
        ds = ds.batch(batch_size, drop_remainder=False)

    ds = ds.map(to_model_inputs).prefetch(tf.data.AUTOTUNE)
    ds.skip_counter = counter
    return ds


# --------------------------------------------------------------------------- fixtures


def _synthetic_pair(rng, size, num_classes):
    """A structured label map ``[H, W]`` and a matching RGB image ``[H, W, 3]``.

    Horizontal bands (sky / buildings / road, as in street scenes) plus a few
    random rectangles and ellipses, each class painted in its own colour on
    top of smooth gradients and mild noise, so crops differ and codecs have
    edges and flat areas to work on.
    """
    h, w = size
    k = max(num_classes, 1)
    labels = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(labels)
    cuts = sorted(rng.integers(1, h, size=2))
    draw.rectangle([0, cuts[0], w, cuts[1]], fill=1 % k)
    draw.rectangle([0, cuts[1], w, h], fill=2 % k)
    for _ in range(3):
        x0, x1 = sorted(rng.integers(0, w, size=2))
        y0, y1 = sorted(rng.integers(0, h, size=2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x1 + 1, y1 + 1], fill=int(rng.integers(0, k)))
    ids = np.asarray(labels, dtype=np.uint8)
    palette = rng.integers(30, 226, size=(k, 3))
    yy, xx = np.mgrid[0:h, 0:w]
    gradient = (xx / max(w - 1, 1) * 40 + yy / max(h - 1, 1) * 20)[..., None]
    noise = rng.normal(0, 6, size=(h, w, 3))
    image = np.clip(palette[ids] + gradient - 30 + noise, 0, 255).astype(np.uint8)
    return ids, image


def write_synthetic_cityscapes(root, splits=_DEFAULT_SPLITS, size=(64, 128), num_classes=4,
                               seed=0):
    """Write a tiny, valid Cityscapes-style tree under ``root``; returns ``root`` (str).

    Args:
      root: directory to write to (created if needed).
      splits: ``{split: number of images}``.
      size: ``(height, width)`` of every image.
      num_classes: label ids are drawn from ``0..num_classes-1``; 0 writes
        no ``gtFine`` folder (images only).
      seed: the content is a function of ``seed`` only.

    Images go to ``leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png``
    (two cities, as in real Cityscapes), labels to the matching
    ``gtFine/.../<stem>_gtFine_labelIds.png``.
    """
    root = os.fspath(root)
    size = _pair(size, "size")
    for s, (split, count) in enumerate(sorted(splits.items())):
        rng = np.random.default_rng([seed, s])
        for i in range(int(count)):
            city = ("alpha", "beta")[i % 2]
            stem = f"{city}_{i // 2:06d}_{19 * (i + 1):06d}"
            ids, image = _synthetic_pair(rng, size, num_classes)
            image_dir = os.path.join(root, IMAGE_DIR, split, city)
            os.makedirs(image_dir, exist_ok=True)
            Image.fromarray(image).save(os.path.join(image_dir, stem + IMAGE_SUFFIX + ".png"))
            if num_classes:
                label_dir = os.path.join(root, LABEL_DIR, split, city)
                os.makedirs(label_dir, exist_ok=True)
                Image.fromarray(ids).save(os.path.join(label_dir, stem + LABEL_SUFFIX))
    return root
