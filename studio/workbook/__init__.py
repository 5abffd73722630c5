"""The lab workbook: record artifacts from any training script, analyse them in pandas.

Training side::

    from studio import workbook
    exp = workbook.new_experiment(params={"lr": 0.01})   # prints the tag
    exp.save_json("options", {"lr": 0.01})
    log = exp.time_series_log("Training loss", ["step", "loss"])
    log(step=0, loss=0.9)

Analysis side (in a notebook)::

    wb = workbook.ExperimentRepository()
    wb[:]                                  # every experiment, newest first
    wb[tag].list_artifacts()
    wb[tag]["options.json"]                # dict
    wb[tag]["Training loss.csv"]           # DataFrame indexed by `step`, `Date` parsed
    wb.meld_csv({tag1: "a", tag2: "b"}, "Training loss.csv", "loss")
    wb.runs(where="lr < 0.01", order_by="metrics.val_loss", limit=10)

`import studio.workbook` is cheap: everything (and pandas) loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.workbook.handle import Experiment, ExperimentList
    from studio.workbook.loaders import register_loader
    from studio.workbook.repository import ExperimentRepository
    from studio.workbook.timeseries import TimeSeriesLog
    from studio.workbook.training import WorkbookExperiment, new_experiment

_EXPORTS = {
    "new_experiment": "studio.workbook.training",
    "WorkbookExperiment": "studio.workbook.training",
    "TimeSeriesLog": "studio.workbook.timeseries",
    "ExperimentRepository": "studio.workbook.repository",
    "Experiment": "studio.workbook.handle",
    "ExperimentList": "studio.workbook.handle",
    "register_loader": "studio.workbook.loaders",
    "loaders": "studio.workbook.loaders",
}

__all__ = [
    "Experiment",
    "ExperimentList",
    "ExperimentRepository",
    "TimeSeriesLog",
    "WorkbookExperiment",
    "loaders",
    "new_experiment",
    "register_loader",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'studio.workbook' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if name == "loaders" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
