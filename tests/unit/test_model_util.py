"""ModelPipe behaviour: mapping, ordering, failures, batching, laziness, timeouts, memory."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from studio import model_util
from studio.model_util import Failure, ItemTimeout, ModelPipe


def squares_pipe(**options: Any) -> ModelPipe:
    pipe = ModelPipe()
    pipe.add(lambda x: x * x, **options)
    return pipe


# -- mapping and collection kinds -------------------------------------------------------------


def test_squares_of_a_list_map_every_index() -> None:
    data = list(range(1000))
    output = squares_pipe(num_workers=4)(data)
    assert isinstance(output, list)
    assert sorted(output) == [(i, i * i) for i in data]


def test_ordered_mode_returns_input_order_even_when_items_finish_out_of_order() -> None:
    rng = random.Random(7)
    delays = [rng.uniform(0, 0.01) for _ in range(60)]

    def negate_slowly(i: int) -> int:
        time.sleep(delays[i])
        return -i

    pipe = ModelPipe()
    pipe.add(negate_slowly, num_workers=8)
    assert pipe(list(range(60)), ordered=True) == [(i, -i) for i in range(60)]
    unordered = pipe(list(range(60)))
    assert sorted(unordered) == [(i, -i) for i in range(60)]


def test_dict_in_dict_out_with_same_keys() -> None:
    data = {f"k{i}": i for i in range(50)}
    output = squares_pipe(num_workers=3)(data)
    assert output == {k: v * v for k, v in data.items()}


def test_ordered_dict_keeps_input_key_order() -> None:
    data = {f"k{i}": i for i in range(30, 0, -1)}
    output = squares_pipe(num_workers=3)(data, ordered=True)
    assert list(output) == list(data)


@pytest.mark.parametrize("kind", [tuple, set, frozenset])
def test_tuple_and_sets_return_the_same_kind(kind: Callable[[list[int]], Iterable[int]]) -> None:
    output = squares_pipe()(kind([3, 4]))
    assert type(output) is kind
    assert {value for _, value in output} == {9, 16}


def test_generator_input_gives_a_lazy_iterator() -> None:
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for i in range(20):
            pulled.append(i)
            yield i

    result = squares_pipe()(source())
    assert not isinstance(result, list | tuple | set)
    time.sleep(0.05)
    assert pulled == []  # nothing runs before the first next()
    assert sorted(result) == [(i, i * i) for i in range(20)]


def test_strings_are_rejected() -> None:
    with pytest.raises(TypeError, match="dict, list"):
        squares_pipe()("abc")


def test_empty_pipe_is_identity_and_empty_input_is_empty() -> None:
    assert ModelPipe()([5]) == [(0, 5)]
    assert squares_pipe(num_workers=2)([]) == []
    assert squares_pipe()({}) == {}


# -- failures -------------------------------------------------------------------------------


def test_exception_drops_only_that_item_and_is_reported() -> None:
    pipe = ModelPipe()
    pipe.add(lambda x: x + 1, num_workers=2)
    pipe.add(lambda x: x - 1)  # composed into stage 0
    pipe.add(lambda x: 1 / x, num_workers=2)  # stage 1, step 2
    data = [2, 1, 0, 4, 0, 5]
    output = dict(pipe(data))
    assert output == {0: 0.5, 1: 1.0, 3: 0.25, 5: 0.2}
    failures = sorted(pipe.failures, key=lambda f: f.key)
    assert [f.key for f in failures] == [2, 4]
    assert all(isinstance(f.error, ZeroDivisionError) for f in failures)
    assert all(f.stage == 1 and f.step == 2 for f in failures)
    assert "ZeroDivisionError" in str(failures[0])


def test_failures_name_the_composed_step_that_raised() -> None:
    def parse(text: str) -> int:
        return int(text)

    pipe = ModelPipe()
    pipe.add(str.strip, num_workers=2)
    pipe.add(parse)
    assert pipe({"a": " 1", "b": "x"}) == {"a": 1}
    (failure,) = pipe.failures
    assert (failure.key, failure.stage, failure.step, failure.step_name) == ("b", 0, 1, "parse")
    assert isinstance(failure.error, ValueError)


def test_failures_are_per_call_and_per_thread() -> None:
    pipe = ModelPipe()
    pipe.add(lambda x: 1 / x, num_workers=2)
    seen: dict[str, list[Any]] = {}

    def call(name: str, data: list[int]) -> None:
        pipe(data)
        seen[name] = [f.key for f in pipe.failures]

    threads = [
        threading.Thread(target=call, args=("a", [0, 1, 1])),
        threading.Thread(target=call, args=("b", [1, 1, 0, 0])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"a": [0], "b": [2, 3]} or seen == {"a": [0], "b": [3, 2]}
    pipe([1])
    assert pipe.failures == []


def test_stream_reports_failures_on_the_stream_object() -> None:
    pipe = ModelPipe()
    pipe.add(lambda x: 1 / x, num_workers=2)
    with pipe.stream([1, 0, 2]) as stream:
        assert sorted(stream) == [(0, 1.0), (2, 0.5)]
    assert [f.key for f in stream.failures] == [1]


def test_an_error_raised_by_the_input_iterable_reaches_the_caller_after_earlier_items() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("source broke")

    seen = []
    with pytest.raises(RuntimeError, match="source broke"):
        for pair in squares_pipe()(source()):
            seen.append(pair)
    assert sorted(seen) == [(0, 1), (1, 4)]


# -- batching -------------------------------------------------------------------------------


def test_vstack_batches_are_assembled_and_split_back_per_item() -> None:
    batch_shapes: list[tuple[int, ...]] = []

    def model(batch: np.ndarray) -> np.ndarray:
        batch_shapes.append(batch.shape)
        return batch * 10  # (n, 3) -> (n, 3)

    pipe = ModelPipe()
    pipe.add(lambda i: np.full((1, 3), i, dtype=np.float32), num_workers=2)
    pipe.add(model, batch_size=8, batcher=np.vstack)
    pipe.add(lambda out: np.argmax(out, axis=1) + out[:, 0])  # composed: sees the whole batch
    output = dict(pipe(list(range(37))))
    assert output == {i: 10.0 * i for i in range(37)}
    assert sum(shape[0] for shape in batch_shapes) == 37
    assert all(shape[0] <= 8 and shape[1:] == (3,) for shape in batch_shapes)
    assert max(shape[0] for shape in batch_shapes) == 8


def test_default_batcher_is_a_list() -> None:
    received: list[Any] = []

    def model(batch: list[int]) -> list[int]:
        received.append(batch)
        return [-x for x in batch]

    pipe = ModelPipe()
    pipe.add(model, batch_size=4)
    assert pipe([1, 2, 3, 4, 5], ordered=True) == [(i, -x) for i, x in enumerate([1, 2, 3, 4, 5])]
    assert all(isinstance(batch, list) for batch in received)


def test_one_bad_item_in_a_batch_drops_only_that_item() -> None:
    calls: list[int] = []

    def model(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if (batch < 0).any():
            raise ValueError("negative pixel")
        return batch.sum(axis=1)

    pipe = ModelPipe()
    pipe.add(lambda i: np.ones((1, 4)) * (-1 if i == 6 else i), num_workers=2)
    pipe.add(model, batch_size=16, batcher=np.vstack)
    output = dict(pipe(list(range(16))))
    assert output == {i: 4.0 * i for i in range(16) if i != 6}
    (failure,) = pipe.failures
    assert failure.key == 6 and failure.stage == 1 and failure.step_name == "model"
    assert isinstance(failure.error, ValueError)
    assert len(calls) <= 1 + 2 * 4  # halving isolates the item in log2(16) rounds


def test_a_failing_batcher_is_reported_as_the_batcher() -> None:
    def float_rows(values: list[Any]) -> np.ndarray:
        return np.vstack([np.asarray(v, dtype=np.float32) for v in values])

    pipe = ModelPipe()
    pipe.add(lambda b: b * 2, batch_size=4, batcher=float_rows)
    output = dict(pipe([[1.0, 2.0], "text", [3.0, 4.0]]))
    assert {k: v.tolist() for k, v in output.items()} == {0: [2.0, 4.0], 2: [6.0, 8.0]}
    (failure,) = pipe.failures
    assert failure.key == 1 and failure.step_name == "batcher(float_rows)"
    assert isinstance(failure.error, ValueError)


def test_wrong_number_of_batch_outputs_is_a_batch_split_error() -> None:
    pipe = ModelPipe()
    pipe.add(lambda batch: [sum(batch)], batch_size=3)
    assert pipe([1, 2, 3]) == []
    assert len(pipe.failures) == 3
    assert all(isinstance(f.error, model_util.BatchSplitError) for f in pipe.failures)


def test_dict_outputs_of_a_batched_step_are_split_per_item() -> None:
    pipe = ModelPipe()
    pipe.add(lambda b: {"double": np.asarray(b) * 2, "neg": np.asarray(b) * -1}, batch_size=4)
    output = dict(pipe([1, 2, 3]))
    assert {k: (int(v["double"]), int(v["neg"])) for k, v in output.items()} == {
        0: (2, -1),
        1: (4, -2),
        2: (6, -3),
    }


def test_ordered_mode_with_several_batch_workers_and_a_small_window_completes() -> None:
    pipe = ModelPipe(max_in_flight=10, batch_wait=0.01)
    pipe.add(lambda b: [x + 1 for x in b], batch_size=8, num_workers=3)
    assert pipe(list(range(100)), ordered=True) == [(i, i + 1) for i in range(100)]


# -- laziness, streaming, termination ---------------------------------------------------------


def test_stream_yields_results_as_they_finish() -> None:
    release = threading.Event()

    def work(i: int) -> int:
        if i == 0:
            release.wait(5)
        return i

    pipe = ModelPipe()
    pipe.add(work, num_workers=4)
    start = time.monotonic()
    stream = pipe.stream(range(10))
    first = [next(stream) for _ in range(9)]
    assert time.monotonic() - start < 4.0  # did not wait for the slow item 0 (5 s)
    assert sorted(first) == [(i, i) for i in range(1, 10)]
    release.set()
    assert list(stream) == [(0, 0)]


def test_call_ends_when_input_ends_not_after_an_idle_timeout() -> None:
    pipe = ModelPipe()
    pipe.add(lambda x: x, num_workers=2, timeout=30)
    pipe.add(lambda x: x + 1, num_workers=2, timeout=30)
    start = time.monotonic()
    assert sorted(pipe([1, 2, 3])) == [(0, 2), (1, 3), (2, 4)]
    assert time.monotonic() - start < 5.0  # far below the stages' 30 s timeout


def test_hung_item_is_abandoned_after_timeout_and_counted_as_failure() -> None:
    hang = threading.Event()

    def fetch(i: int) -> int:
        if i == 3:
            hang.wait(10)  # a fetch that never answers
        return i

    pipe = ModelPipe()
    pipe.add(fetch, num_workers=1, timeout=0.2)  # one worker: the replacement must take over
    pipe.add(lambda x: x * 2)
    start = time.monotonic()
    output = dict(pipe(list(range(8))))
    elapsed = time.monotonic() - start
    hang.set()
    assert output == {i: 2 * i for i in range(8) if i != 3}
    assert elapsed < 5.0  # the hung fetch was abandoned, not waited for
    (failure,) = pipe.failures
    assert failure.key == 3 and failure.stage == 0 and failure.step == 0
    assert isinstance(failure.error, ItemTimeout)


def test_timeout_on_a_batched_stage_fails_the_whole_batch_only() -> None:
    hang = threading.Event()

    def model(batch: list[int]) -> list[int]:
        if 0 in batch:
            hang.wait(10)
        return batch

    pipe = ModelPipe(batch_wait=0.01)
    pipe.add(model, batch_size=2, timeout=0.2)
    output = dict(pipe([0, 1, 2, 3, 4], ordered=True))
    hang.set()
    assert output == {2: 2, 3: 3, 4: 4}
    assert sorted(f.key for f in pipe.failures) == [0, 1]


def test_large_generator_is_read_only_a_bounded_window_ahead() -> None:
    produced = 0
    worst_lead = 0

    def source() -> Iterator[int]:
        nonlocal produced
        for i in range(50_000):
            produced += 1
            yield i

    pipe = ModelPipe(max_in_flight=64)
    pipe.add(lambda x: x + 1, num_workers=4)
    pipe.add(lambda b: b, batch_size=16, num_workers=2)
    consumed = 0
    for _ in pipe(source()):
        consumed += 1
        worst_lead = max(worst_lead, produced - consumed)
    assert consumed == 50_000
    assert worst_lead <= 64


def test_slow_consumer_applies_backpressure_with_default_window() -> None:
    produced = 0

    def source() -> Iterator[bytes]:
        nonlocal produced
        for _ in range(100_000):
            produced += 1
            yield b"x" * 1000

    pipe = ModelPipe()
    pipe.add(len, num_workers=4)
    stream = pipe.stream(source())
    next(stream)
    time.sleep(0.3)  # the consumer stalls; the pipe must stall too
    assert produced < 2_000
    stream.close()


def test_closing_a_stream_early_stops_its_threads() -> None:
    before = threading.active_count()
    pipe = ModelPipe()
    pipe.add(lambda x: x, num_workers=8)
    stream = pipe.stream(iter(range(10**9)))
    next(stream)
    stream.close()
    deadline = time.monotonic() + 2
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() <= before


# -- building ---------------------------------------------------------------------------------


def test_option_free_steps_compose_and_options_start_stages() -> None:
    pipe = ModelPipe()
    pipe.add(str)
    pipe.add(len)
    pipe.add(lambda n: n * 2, num_workers=3, timeout=1)
    pipe.add(abs)
    pipe.add(lambda b: b, batch_size=4)
    stages = pipe.stages
    assert [len(s.steps) for s in stages] == [2, 2, 1]
    assert [(s.num_workers, s.timeout, s.batch_size) for s in stages] == [
        (1, None, None),
        (3, 1, None),
        (1, None, 4),
    ]
    assert dict(pipe([100, 5])) == {0: 6, 1: 2}


@pytest.mark.parametrize(
    "options",
    [
        {"num_workers": 0},
        {"timeout": 0},
        {"batch_size": 0},
        {"batcher": np.vstack},
    ],
)
def test_invalid_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ModelPipe().add(abs, **options)


def test_importing_model_util_loads_no_heavy_modules() -> None:
    code = (
        "import sys; from studio import model_util; "
        "print(sorted({'numpy', 'PIL', 'torch'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- resize_to_model_input --------------------------------------------------------------------


class KerasLike:
    def __init__(self, input_shape: tuple[int | None, ...]) -> None:
        self.input_shape = input_shape


def gradient_image(size: tuple[int, int] = (40, 30)) -> Image.Image:
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    array[..., 0] = 255  # pure red
    array[..., 2] = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :]
    return Image.fromarray(array)


def test_resize_to_keras_input_shape_channels_last() -> None:
    to_input = model_util.resize_to_model_input(KerasLike((None, 28, 20, 3)))
    array = to_input(gradient_image())
    assert array.shape == (1, 28, 20, 3) and array.dtype == np.float32
    assert 0.0 <= array.min() and array.max() <= 1.0
    assert np.allclose(array[..., 0], 1.0)


def test_resize_to_explicit_channels_first_shape_for_torch() -> None:
    array = model_util.resize_to_model_input(shape=(3, 16, 12))(gradient_image())
    assert array.shape == (1, 3, 16, 12)
    assert np.allclose(array[0, 0], 1.0) and np.allclose(array[0, 1], 0.0)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((28, 28), (1, 28, 28)), ((28, 28, 1), (1, 28, 28, 1)), ((784,), (1, 784))],
)
def test_resize_to_grayscale_shapes(shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    array = model_util.resize_to_model_input(KerasLike((None, *shape)))(gradient_image())
    assert array.shape == expected
    assert 0.0 <= array.min() and array.max() <= 1.0


@pytest.mark.parametrize("shape", [(None, None, 3), (5, 6, 7), (10, 10, 10, 3), (783,)])
def test_unusable_shapes_fail_early(shape: tuple[int | None, ...]) -> None:
    with pytest.raises(ValueError):
        model_util.resize_to_model_input(shape=shape)


def test_model_without_input_shape_asks_for_shape() -> None:
    with pytest.raises(ValueError, match="shape="):
        model_util.resize_to_model_input(object())


def test_resize_inside_a_pipe_with_vstack_batching() -> None:
    pipe = ModelPipe()
    pipe.add(lambda w: gradient_image((w, 10)), num_workers=2)
    pipe.add(model_util.resize_to_model_input(shape=(8, 8, 3)))
    pipe.add(lambda batch: batch.mean(axis=(1, 2, 3)), batch_size=4, batcher=np.vstack)
    output = pipe({w: w for w in (10, 20, 30)})
    assert set(output) == {10, 20, 30}
    assert all(0.0 < value < 1.0 for value in output.values())


# -- torch ------------------------------------------------------------------------------------


def test_torch_stage_runs_batches_under_no_grad() -> None:
    torch = pytest.importorskip("torch")

    module: Any = torch.nn.Module

    class Probe(module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)
            self.grad_enabled: list[bool] = []
            self.batch_sizes: list[int] = []

        def forward(self, x: Any) -> Any:
            self.grad_enabled.append(torch.is_grad_enabled())
            self.batch_sizes.append(x.shape[0])
            return self.linear(x)

    model = Probe()
    pipe = ModelPipe()
    pipe.add(lambda i: np.full((1, 4), i, dtype=np.float64), num_workers=2)
    pipe.add_torch(model, batch_size=8)
    pipe.add(lambda out: out.argmax(axis=1))
    output = dict(pipe(list(range(20))))
    assert set(output) == set(range(20))
    assert model.grad_enabled and not any(model.grad_enabled)
    assert sum(model.batch_sizes) == 20 and max(model.batch_sizes) <= 8
    with torch.no_grad():
        expected = model.linear(torch.full((1, 4), 5.0)).argmax(dim=1).item()
    assert output[5] == expected


def test_failure_record_is_a_frozen_dataclass() -> None:
    failure = Failure("k", 0, 1, "f", ValueError("x"))
    with pytest.raises(AttributeError):
        failure.key = "other"  # type: ignore[misc]


def test_a_step_raising_a_base_exception_cancels_the_call_with_a_pipe_error() -> None:
    def leave(x: int) -> int:
        if x == 2:
            raise SystemExit(3)
        return x

    pipe = ModelPipe()
    pipe.add(leave, num_workers=2)
    with pytest.raises(model_util.PipeError, match="stopped unexpectedly"):
        pipe(list(range(5)))
