"""ModelPipe benchmark: the seed's 7k-URL table, reproduced on this machine.

    python bench/bench_model_pipe.py [--n 7000] [--full]

Set-up: N image URLs served by a threaded HTTP server on 127.0.0.1 in a separate process,
each answering after a planned latency (~100 ms; 3% slow 0.3-1 s; 1.5% 404; 1.5% corrupt;
0.1% never answering, cut by the 2 s socket timeout every variant uses). A small CNN on CPU
(torch if installed, else numpy) classifies 64x64 crops; its per-item cost falls with batch
size because its fully connected layers stream their weights once per call.

Variants: one by one; ModelPipe (batch 64, 4 workers); ModelPipe (batch 128, 32 workers); a
hand-written concurrent.futures thread pool with manual batching (32 threads, batch 128);
torch DataLoader (32 worker processes, batch 128) if torch is installed. The 32-way pipe and
the thread pool run interleaved --repeat times and report their best time.

Physical limit = max(sum of planned fetch latencies / 32, model time at its best batch
size), i.e. what 32-way fetching and the model alone cannot beat. Every time is printed as
a ratio to it. To keep the default run short, one-by-one is measured on --sample URLs and
extrapolated (all planned latencies + measured per-item processing time); the 4-worker pipe
on --slow-sample URLs and scaled by planned latency. --full measures everything.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from studio import model_util  # noqa: E402

FETCH_TIMEOUT = 2.0
INPUT_SHAPE = (3, 64, 64)
CALIBRATION_SIZES = (1, 16, 32, 64, 128, 256)


# -- the URL plan and its server ------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    kind: str  # ok | slow | missing | corrupt | hang
    delay: float


def plan_urls(n: int, seed: int) -> list[Planned]:
    rng = random.Random(seed)
    plan = []
    for _ in range(n):
        r = rng.random()
        if r < 0.001:
            plan.append(Planned("hang", 30.0))
        elif r < 0.016:
            plan.append(Planned("missing", rng.uniform(0.08, 0.12)))
        elif r < 0.031:
            plan.append(Planned("corrupt", rng.uniform(0.08, 0.12)))
        elif r < 0.061:
            plan.append(Planned("slow", rng.uniform(0.3, 1.0)))
        else:
            plan.append(Planned("ok", rng.uniform(0.08, 0.12)))
    return plan


def fetch_latency(plan: Sequence[Planned]) -> float:
    """Seconds a client must wait in total, counting a hung URL as the socket timeout."""
    return sum(min(p.delay, FETCH_TIMEOUT) for p in plan)


def make_images(count: int = 32) -> list[bytes]:
    rng = np.random.default_rng(1)
    images = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
        pixels[:, :, i % 3] //= 2
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
        images.append(buffer.getvalue())
    return images


def serve(n: int, seed: int, port_out: Any) -> None:
    """Child process: serve /u/<i> according to the plan until terminated."""
    plan = plan_urls(n, seed)
    images = make_images()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            index = int(self.path.rsplit("/", 1)[1])
            planned = plan[index]
            time.sleep(planned.delay)
            if planned.kind == "missing":
                self.send_error(404)
                return
            body = images[index % len(images)]
            if planned.kind == "corrupt":
                body = body[: len(body) // 3] if index % 2 else b"<html>not an image</html>"
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024  # the default (5) makes bursts wait for SYN retries

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # clients that gave up on a hung URL closed their end: expected here

    server = Server(("127.0.0.1", 0), Handler)
    port_out.send(server.server_address[1])
    server.serve_forever()


# -- the model ------------------------------------------------------------------------------


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def build_model(use_torch: bool, width: int) -> Callable[[np.ndarray], np.ndarray]:
    """A small CNN: two conv layers, then fully connected layers of ``width``."""
    if use_torch:
        import torch
        from torch import nn

        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 8 * 8, width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10),
        )  # fmt: skip
        return model_util.torch_model(net)
    return NumpyCNN(width)


class NumpyCNN:
    """The same architecture in numpy (used when torch is not installed)."""

    def __init__(self, width: int) -> None:
        rng = np.random.default_rng(0)

        def weights(*shape: int) -> np.ndarray:
            return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

        self.conv1, self.conv2 = weights(32, 3, 5, 5), weights(64, 32, 3, 3)
        self.fc = [weights(64 * 8 * 8, width), weights(width, width), weights(width, 10)]

    @staticmethod
    def _conv(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
        pad = w.shape[-1] // 2
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[-2:], axis=(2, 3))
        windows = windows[:, :, ::stride, ::stride]
        out = np.einsum("bchwij,ocij->bohw", windows, w, optimize=True)
        out = np.maximum(out, 0)
        b, c, h, w_ = out.shape
        return out.reshape(b, c, h // 2, 2, w_ // 2, 2).max(axis=(3, 5))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = self._conv(np.asarray(batch, dtype=np.float32), self.conv1, 2)
        x = self._conv(x, self.conv2, 1).reshape(len(batch), -1)
        for layer in self.fc[:-1]:
            x = np.maximum(x @ layer, 0)
        return x @ self.fc[-1]


def calibrate(model: Callable[[np.ndarray], np.ndarray]) -> dict[int, float]:
    """Seconds per item at each batch size (median of 3 timed calls after a warm-up)."""
    per_item = {}
    for size in CALIBRATION_SIZES:
        batch = np.random.default_rng(size).random((size, *INPUT_SHAPE), dtype=np.float32)
        model(batch)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - start)
        per_item[size] = statistics.median(times) / size
    return per_item


# -- the variants ---------------------------------------------------------------------------


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
        return response.read()  # type: ignore[no-any-return]


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


to_input = model_util.resize_to_model_input(shape=INPUT_SHAPE)


def load(url: str) -> np.ndarray:
    return to_input(decode(fetch(url)))


def one_by_one(urls: Sequence[str], model: Callable[[np.ndarray], np.ndarray]) -> dict[str, int]:
    labels = {}
    for url in urls:
        try:
            labels[url] = int(np.argmax(model(load(url)), axis=1)[0])
        except Exception:  # noqa: S112 - the naive loop skips broken URLs
            continue
    return labels


def model_pipe(
    urls: Sequence[str], model: Callable[[np.ndarray], np.ndarray], batch: int, workers: int
) -> dict[str, int]:
    pipe = model_util.ModelPipe()
    pipe.add(fetch, num_workers=workers, timeout=FETCH_TIMEOUT + 1)
    pipe.add(decode)
    pipe.add(to_input)
    pipe.add(model, num_workers=1, batch_size=batch, batcher=np.vstack)
    pipe.add(lambda out: np.argmax(out, axis=1))
    labels: dict[str, int] = pipe({url: url for url in urls})
    return labels


def thread_pool(
    urls: Sequence[str], model: Callable[[np.ndarray], np.ndarray], batch: int, workers: int
) -> dict[str, int]:
    """What a user writes by hand: a thread pool for I/O, batches formed as loads complete."""
    labels: dict[str, int] = {}
    keys: list[str] = []
    arrays: list[np.ndarray] = []

    def flush() -> None:
        predicted = np.argmax(model(np.vstack(arrays)), axis=1)
        labels.update(zip(keys, (int(p) for p in predicted), strict=True))
        keys.clear()
        arrays.clear()

    with ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(load, url): url for url in urls}
        for future in as_completed(futures):
            try:
                arrays.append(future.result())
            except Exception:  # noqa: S112
                continue
            keys.append(futures[future])
            if len(keys) == batch:
                flush()
    if keys:
        flush()
    return labels


class UrlDataset:
    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = urls

    def __len__(self) -> int:
        return len(self.urls)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None]:
        try:
            return index, load(self.urls[index])
        except Exception:
            return index, None


def collate(items: list[tuple[int, np.ndarray | None]]) -> tuple[list[int], np.ndarray | None]:
    good = [(i, a) for i, a in items if a is not None]
    return [i for i, _ in good], np.vstack([a for _, a in good]) if good else None


def data_loader(
    urls: Sequence[str], model: Callable[[np.ndarray], np.ndarray], batch: int, workers: int
) -> dict[str, int]:
    from torch.utils.data import DataLoader

    # torch warns that 32 workers exceed the core count; they wait on I/O, which is the point.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    loader: DataLoader[Any] = DataLoader(
        UrlDataset(urls),  # type: ignore[arg-type]
        batch_size=batch,
        num_workers=workers,
        collate_fn=collate,
        multiprocessing_context="fork",
    )
    labels = {}
    for indices, arrays in loader:
        if arrays is not None:
            predicted = np.argmax(model(arrays), axis=1)
            labels.update({urls[i]: int(p) for i, p in zip(indices, predicted, strict=True)})
    return labels


# -- driver ---------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    measured_on: int
    seconds: float  # for all N URLs (extrapolated when measured_on < N)
    labels: int
    concurrency: int


def timed(run: Callable[[], dict[str, int]]) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    labels = run()
    return time.perf_counter() - start, labels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=7000, help="number of URLs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=4096, help="width of the FC layers")
    parser.add_argument("--sample", type=int, default=200, help="URLs measured one by one")
    parser.add_argument("--slow-sample", type=int, default=1000, help="URLs for the 4-worker pipe")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of pipe vs thread pool")
    parser.add_argument("--full", action="store_true", help="measure every variant on all URLs")
    parser.add_argument("--numpy", action="store_true", help="use the numpy model even with torch")
    parser.add_argument("--skip", action="append", default=[], help="skip a variant by name")
    args = parser.parse_args(argv)

    use_torch = torch_available() and not args.numpy
    plan = plan_urls(args.n, args.seed)
    good = sum(p.kind in ("ok", "slow") for p in plan)
    receiver, sender = multiprocessing.get_context("spawn").Pipe(duplex=False)
    server = multiprocessing.get_context("spawn").Process(
        target=serve, args=(args.n, args.seed, sender), daemon=True
    )
    server.start()
    port = receiver.recv()
    urls = [f"http://127.0.0.1:{port}/u/{i}" for i in range(args.n)]

    model = build_model(use_torch, args.width)
    per_item = calibrate(model)
    latency = fetch_latency(plan)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    print(f"URLs: {args.n} ({good} images, {args.n - good} missing/corrupt/hung); "
          f"total planned fetch latency {latency:.0f} s")  # fmt: skip
    print(f"model: {'torch' if use_torch else 'numpy'} CNN, FC width {args.width}")

    results: dict[str, Result] = {}

    def record(name: str, concurrency: int, count: int, run: Callable[[], dict[str, int]]) -> None:
        if name in args.skip:
            return
        seconds, labels = timed(run)
        expected = sum(p.kind in ("ok", "slow") for p in plan[:count])
        if len(labels) != expected:
            print(f"  WARNING {name}: {len(labels)} labels, expected {expected}")
        if count < args.n and concurrency == 1:
            processing = (seconds - fetch_latency(plan[:count])) / count
            seconds = latency + processing * args.n
        elif count < args.n:
            seconds *= latency / fetch_latency(plan[:count])
        print(f"  {name}: {seconds:.1f} s" + (f" (from {count} URLs)" if count < args.n else ""))
        sys.stdout.flush()
        if name not in results or seconds < results[name].seconds:
            results[name] = Result(name, count, seconds, len(labels), concurrency)

    sample = args.n if args.full else min(args.sample, args.n)
    slow_sample = args.n if args.full else min(args.slow_sample, args.n)
    record("one-by-one", 1, sample, lambda: one_by_one(urls[:sample], model))
    record("pipe (batch 64, workers 4)", 4, slow_sample,
           lambda: model_pipe(urls[:slow_sample], model, 64, 4))  # fmt: skip
    # The two closest contenders run interleaved, best of --repeat, to cancel drifting load.
    for _ in range(args.repeat):
        record("pipe (batch 128, workers 32)", 32, args.n,
               lambda: model_pipe(urls, model, 128, 32))  # fmt: skip
        record("thread pool (batch 128, threads 32)", 32, args.n,
               lambda: thread_pool(urls, model, 128, 32))  # fmt: skip
    if use_torch:
        record("torch DataLoader (batch 128, workers 32)", 32, args.n,
               lambda: data_loader(urls, model, 128, 32))  # fmt: skip
    server.terminate()

    # The model's best observed speed (calibrated before and after the runs) sets the limit.
    after = calibrate(model)
    per_item = {size: min(per_item[size], after[size]) for size in per_item}
    best_size = min(per_item, key=lambda size: per_item[size])
    model_limit = good * per_item[best_size]
    limit = max(latency / 32, model_limit)
    print("model ms per item: " + ", ".join(f"b{s}={t * 1e3:.2f}" for s, t in per_item.items()))
    print(f"limit = max(fetch {latency:.0f} s / 32 = {latency / 32:.1f} s, model {good} x "
          f"{per_item[best_size] * 1e3:.2f} ms at batch {best_size} = {model_limit:.1f} s) "
          f"= {limit:.1f} s; load average {os.getloadavg()[0]:.1f} at end")  # fmt: skip

    base = results["one-by-one"].seconds if "one-by-one" in results else None
    print()
    print("| variant | time (s) | s per URL | vs one-by-one | / limit |")
    print("|---|---:|---:|---:|---:|")
    for r in results.values():
        speedup = f"{base / r.seconds:.1f}x" if base else "-"
        note = f" (measured on {r.measured_on}, extrapolated)" if r.measured_on < args.n else ""
        print(f"| {r.name}{note} | {r.seconds:.1f} | {r.seconds / args.n:.4f} | {speedup} "
              f"| {r.seconds / limit:.2f} |")  # fmt: skip
    print(f"| physical limit | {limit:.1f} | {limit / args.n:.4f} | "
          f"{f'{base / limit:.1f}x' if base else '-'} | 1.00 |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
