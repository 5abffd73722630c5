"""The seed's URL pipeline against a real HTTP server on loopback.

The server serves generated PNG images whose dominant colour channel is their label, plus
URLs that are missing (404), corrupt (not an image / truncated), slow, or never answer.
"""

from __future__ import annotations

import io
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from studio import model_util
from studio.model_util import ItemTimeout, ModelPipe


def png_bytes(label: int, size: int = 24) -> bytes:
    rng = np.random.default_rng(label * 1000 + size)
    pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    pixels[..., label] += 150
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class ImageServer:
    base: str
    release: threading.Event = field(default_factory=threading.Event)
    requests: int = 0

    def url(self, kind: str, ident: int) -> str:
        return f"{self.base}/{kind}/{ident}.png"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 makes concurrent clients wait for a SYN retry (1 s).
    request_queue_size = 128


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    images = {label: png_bytes(label) for label in range(3)}
    state = ImageServer(base="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            state.requests += 1
            _, kind, name = self.path.split("/")
            ident = int(name.split(".")[0])
            if kind == "missing":
                self.send_error(404)
                return
            if kind == "hang":
                state.release.wait(10)
            if kind == "slow":
                time.sleep(0.3)
            body = images[ident % 3]
            if kind == "garbage":
                body = b"this is not an image"
            elif kind == "truncated":
                body = body[: len(body) // 2]
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()  # type: ignore[no-any-return]


def open_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def mean_colour(batch: np.ndarray) -> np.ndarray:
    """A stand-in model: (n, H, W, 3) -> (n, 3) channel means."""
    return batch.mean(axis=(1, 2))


def url_pipe(timeout: float = 1.0) -> ModelPipe:
    class KerasLike:
        input_shape = (None, 8, 8, 3)

    pipe = ModelPipe()
    pipe.add(fetch, num_workers=8, timeout=timeout)
    pipe.add(open_image)
    pipe.add(model_util.resize_to_model_input(KerasLike()))
    pipe.add(mean_colour, num_workers=1, batch_size=8, batcher=np.vstack)
    pipe.add(lambda x: np.argmax(x, axis=1))
    return pipe


def test_url_pipeline_maps_good_urls_and_reports_every_broken_one(
    image_server: ImageServer,
) -> None:
    good = [image_server.url("img", i) for i in range(30)]
    slow = [image_server.url("slow", i) for i in range(30, 33)]
    broken = {
        image_server.url("missing", 40): (0, "fetch"),
        image_server.url("garbage", 41): (1, "open_image"),
        image_server.url("truncated", 42): (2, "ImageToArray"),
        image_server.url("hang", 43): (0, "fetch"),
    }
    urls = good + slow + list(broken)
    pipe = url_pipe(timeout=1.0)

    start = time.monotonic()
    labels = pipe({url: url for url in urls})
    elapsed = time.monotonic() - start

    expected = {url: int(url.rsplit("/", 1)[1].split(".")[0]) % 3 for url in good + slow}
    assert {url: int(label) for url, label in labels.items()} == expected
    by_key = {failure.key: failure for failure in pipe.failures}
    assert set(by_key) == set(broken)
    for url, (step, name) in broken.items():
        assert (by_key[url].stage, by_key[url].step, by_key[url].step_name) == (0, step, name)
    assert getattr(by_key[image_server.url("missing", 40)].error, "code", None) == 404
    assert isinstance(by_key[image_server.url("garbage", 41)].error, UnidentifiedImageError)
    assert isinstance(by_key[image_server.url("truncated", 42)].error, OSError)
    assert isinstance(by_key[image_server.url("hang", 43)].error, ItemTimeout)
    # The hung URL cost its timeout, not its 10 s; the end did not wait for an idle timeout.
    assert elapsed < 4.0


def test_url_generator_streams_in_input_order(image_server: ImageServer) -> None:
    def urls() -> Iterator[str]:
        for i in range(24):
            kind = "missing" if i % 7 == 3 else "slow" if i % 5 == 0 else "img"
            yield image_server.url(kind, i)

    pipe = url_pipe()
    stream = pipe.stream(urls(), ordered=True)
    pairs = [(index, int(label)) for index, label in stream]
    expected = [(i, i % 3) for i in range(24) if i % 7 != 3]
    assert pairs == expected
    assert sorted(f.key for f in stream.failures) == [3, 10, 17]


def test_url_pipeline_with_a_torch_model(image_server: ImageServer) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    pipe = ModelPipe()
    pipe.add(fetch, num_workers=8, timeout=2)
    pipe.add(open_image)
    pipe.add(model_util.resize_to_model_input(shape=(3, 8, 8)))
    pipe.add_torch(model, batch_size=4)
    pipe.add(lambda out: out.argmax(axis=1))
    urls = [image_server.url("img", i) for i in range(10)] + [image_server.url("missing", 99)]
    labels = pipe(urls, ordered=True)
    assert [(i, int(label)) for i, label in labels] == [(i, i % 3) for i in range(10)]
    assert [f.key for f in pipe.failures] == [10]
