"""``resize_to_model_input``: PIL image -> float array in [0, 1] shaped for a model.

numpy and PIL are imported when the returned function first runs, never at import time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from studio.exceptions import install_hint
from studio.pipe.errors import MissingDependency

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def resize_to_model_input(
    model: Any = None,
    shape: Sequence[int | None] | None = None,
    *,
    channels_first: bool | None = None,
) -> ImageToArray:
    """A function turning a PIL image into a ``float32`` array in [0, 1] for ``model``.

    The per-image shape comes from ``shape`` if given, else from the Keras-style
    ``model.input_shape`` (its first, batch, dimension is dropped; so is a leading ``None``
    in ``shape``). Supported per-image shapes:

    * ``(H, W)``: grayscale;
    * ``(H, W, C)`` with C in 1, 3, 4: channels last (Keras);
    * ``(C, H, W)`` with C in 1, 3, 4: channels first (torch); chosen automatically when
      only the first dimension looks like channels, or forced with ``channels_first``;
    * ``(N,)``: a flattened square image, grayscale if N = s*s, else RGB if N = 3*s*s.

    The returned array has a leading batch dimension of 1, ``(1, *shape)``, so it can be
    fed to ``model.predict`` alone or joined into batches with ``np.vstack``. The image is
    converted to L / RGB / RGBA to match the channels and resized bilinearly (aspect ratio
    is not kept). Raises ``ValueError`` at once if the shape cannot be understood.
    """
    if shape is None:
        if model is None or not hasattr(model, "input_shape"):
            raise ValueError(
                "cannot read the model's input shape (no `input_shape` attribute); pass the "
                "per-image shape explicitly, e.g. resize_to_model_input(shape=(3, 224, 224))"
            )
        model_shape = model.input_shape
        if isinstance(model_shape, list):
            raise ValueError("the model has several inputs; pass shape= for the image input")
        dims = tuple(model_shape)[1:]
    else:
        dims = tuple(shape)
        if dims and dims[0] is None:
            dims = dims[1:]
    return ImageToArray(dims, channels_first)


class ImageToArray:
    """The callable returned by ``resize_to_model_input`` (picklable, thread-safe)."""

    def __init__(self, dims: Sequence[int | None], channels_first: bool | None = None) -> None:
        if any(d is None or not isinstance(d, int) or d < 1 for d in dims) or not dims:
            raise ValueError(
                f"unsupported input shape {tuple(dims)}: every dimension must be a fixed "
                "positive integer; pass shape=(H, W, C) or (C, H, W)"
            )
        sizes = [int(d) for d in dims if d is not None]
        self.shape: tuple[int, ...] = tuple(sizes)
        self.channels_first = False
        if len(sizes) == 1:
            gray, rgb = math.isqrt(sizes[0]), math.isqrt(sizes[0] // 3)
            if gray * gray == sizes[0]:
                self.height, self.width, self.channels = gray, gray, 1
            elif 3 * rgb * rgb == sizes[0]:
                self.height, self.width, self.channels = rgb, rgb, 3
            else:
                raise ValueError(f"flat input of {sizes[0]} values is not a square image")
        elif len(sizes) == 2:
            self.height, self.width, self.channels = sizes[0], sizes[1], 1
        elif len(sizes) == 3:
            first, last = sizes[0] in _MODES, sizes[2] in _MODES
            if channels_first is None:
                channels_first = first and not last
            if channels_first and not first or not channels_first and not last:
                raise ValueError(
                    f"cannot find 1, 3 or 4 channels in shape {tuple(sizes)} "
                    f"({'channels first' if channels_first else 'channels last'})"
                )
            self.channels_first = channels_first
            if channels_first:
                self.channels, self.height, self.width = sizes
            else:
                self.height, self.width, self.channels = sizes
        else:
            raise ValueError(f"unsupported input shape {tuple(sizes)}: expected 1 to 3 dims")
        self.mode = _MODES[self.channels]

    def __call__(self, image: Image.Image) -> np.ndarray[Any, Any]:
        try:
            import numpy as np
            from PIL import Image
        except ImportError as exc:
            raise MissingDependency(
                f"resize_to_model_input needs numpy and pillow ({exc}); "
                f"install them with `{install_hint('pipe')}`"
            ) from exc
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image, got {type(image).__name__}")
        if image.mode != self.mode:
            image = image.convert(self.mode)
        resized = image.resize((self.width, self.height), Image.Resampling.BILINEAR)
        array = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
        if self.channels_first and array.ndim == 3:
            array = array.transpose(2, 0, 1)
        # A single channel comes back as (H, W); reshape adds the channel axis of size 1.
        return np.ascontiguousarray(array.reshape((1, *self.shape)))

    def __repr__(self) -> str:
        layout = "CHW" if self.channels_first else "HWC"
        return f"resize_to_model_input(shape={self.shape}, {layout}, mode={self.mode})"
