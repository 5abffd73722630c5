"""A small model to sweep: linear regression by gradient descent on generated data.

    studio run --hyperparam=lr=0.01:0.01:0.1 --metric=val_loss:min train.py 30

`lr` and `l2` are plain assignments: the sweep substitutes each experiment's values where
they are read (upstream's rule), and `studio.params()` has them too. Every epoch writes
TensorBoard scalars (with the `tensorboard` package's event writer, else torch's
SummaryWriter, else `studio.log`) and prints `val_loss: <value>`, so `--metric=val_loss`
finds the metric whichever source is available. No downloads: the data is generated.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

import studio
from studio import fs_tracker

lr = 0.01
l2 = 0.0
# .format, as in the seed: an f-string would put `lr` before the last '=' of the line, where
# the sweep does not substitute it.
print("params: {}".format(studio.params()))  # noqa: UP032
print("learning rate = {}, l2 = {}".format(lr, l2))  # noqa: UP032


class Scalars:
    """TensorBoard scalars in the experiment's `tb` artifact, whatever writer is installed."""

    def __init__(self, logdir: str) -> None:
        self.kind = "studio.log"
        self.writer: Any = None
        try:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self.writer, self.kind = EventFileWriter(logdir), "tensorboard"
        except ImportError:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer, self.kind = SummaryWriter(logdir), "torch"
            except ImportError:
                pass

    def add(self, tag: str, value: float, step: int) -> None:
        if self.kind == "tensorboard":
            from tensorboard.compat.proto import event_pb2, summary_pb2

            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
            self.writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
        elif self.kind == "torch":
            self.writer.add_scalar(tag, value, step)
        else:
            studio.log(step=step, **{tag: value})

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def main() -> None:
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    w_true = rng.normal(size=8)
    y = x @ w_true + 0.1 * rng.normal(size=400)
    x_train, y_train, x_val, y_val = x[:300], y[:300], x[300:], y[300:]

    scalars = Scalars(fs_tracker.get_tensorboard_dir())
    w = np.zeros(8)
    for epoch in range(epochs):
        grad = 2 * x_train.T @ (x_train @ w - y_train) / len(y_train) + 2 * l2 * w
        w -= lr * grad
        train_loss = float(np.mean((x_train @ w - y_train) ** 2))
        val_loss = float(np.mean((x_val @ w - y_val) ** 2))
        if not np.isfinite(val_loss):
            print("diverged", flush=True)
            sys.exit(1)
        scalars.add("train_loss", train_loss, epoch)
        scalars.add("val_loss", val_loss, epoch)
        print(f"val_loss: {val_loss:.6g}", flush=True)
    scalars.close()


if __name__ == "__main__":
    main()
