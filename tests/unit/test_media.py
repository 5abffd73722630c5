"""Encoding rich results: PNG bytes from arrays (checked by decoding with Pillow), image
layouts, and where each kind lands; grouping for the dashboard."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from studio.server.api_media import group
from studio.workbook.media import encode_image, image_array, png_bytes


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_round_trips_every_pixel(channels: int) -> None:
    rng = np.random.default_rng(channels)
    arr = rng.integers(0, 256, size=(17, 23, channels), dtype=np.uint8)
    back = decode(png_bytes(arr))
    assert back.shape[:2] == (17, 23)
    assert np.array_equal(back.reshape(17, 23, channels), arr)


def test_float_images_scale_and_clip() -> None:
    arr = np.array([[0.0, 0.5, 1.0, 2.0, -1.0, np.nan]])
    assert image_array(arr)[0, :, 0].tolist() == [0, 128, 255, 255, 0, 0]


def test_channels_first_is_transposed() -> None:
    chw = np.zeros((3, 4, 5), dtype=np.uint8)
    chw[0] = 255  # red plane
    hwc = image_array(chw)
    assert hwc.shape == (4, 5, 3)
    assert (hwc[:, :, 0] == 255).all() and (hwc[:, :, 1] == 0).all()


def test_torch_tensor_and_pil_image() -> None:
    import torch
    t = torch.ones(1, 2, 3) * 0.5
    assert decode(encode_image(t)).tolist() == [[128, 128, 128], [128, 128, 128]]
    pil = Image.new("RGB", (3, 2), (10, 20, 30))
    assert decode(encode_image(pil))[1, 2].tolist() == [10, 20, 30]


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 2, 2, 2)), "HxW, HxWxC or CxHxW"),
        (np.zeros((5, 5, 5)), "1, 3 or 4 channels"),
        (np.full((2, 2), 300), "within 0-255"),
        (np.zeros((0, 3)), "at least one pixel"),
    ],
)
def test_bad_images_say_what_is_wrong(bad: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        image_array(bad)


def test_group_sorts_media_by_name_and_step() -> None:
    paths = [
        "media/samples/0000000002.png", "media/samples/0000000000.png", "media/val/x/0000000001.png",
        "figures/roc/0000000003.plotly.json", "figures/mpl/0000000000.png", "figures/mpl/0000000000.svg",
        "tables/preds.parquet", "options.json", "media/stray.png",
    ]
    g = group(paths)
    assert [i["step"] for i in g["images"]["samples"]] == [0, 2]
    assert list(g["images"]) == ["samples", "val/x"]
    assert g["figures"]["roc"] == [{"step": 3, "path": "figures/roc/0000000003.plotly.json", "format": "plotly"}]
    assert [f["format"] for f in g["figures"]["mpl"]] == ["image"]
    assert g["tables"] == [{"name": "preds", "path": "tables/preds.parquet"}]


def test_import_studio_loads_no_framework() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    heavy = ("torch", "lightning", "keras", "transformers", "sklearn", "mlflow", "IPython", "PIL", "matplotlib", "plotly")
    code = (
        "import sys, studio, studio.integrations; studio.load_ipython_extension; studio.log_image;"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(repo)))
    assert out.stdout.strip() == "[]"
