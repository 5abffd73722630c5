"""scikit-learn: an estimator's params and its scores in one call.

    from studio.integrations.sklearn import log_estimator
    model = RandomForestClassifier(n_estimators=50).fit(X_train, y_train)
    scores = log_estimator(model, X_test, y_test, scoring=["accuracy", "f1_macro"], cv=(X, y))

- params: ``estimator.get_params(deep=True)`` (pipelines' steps as ``step__param``), values
  JSON cannot hold as their repr;
- scores on (`X`, `y`): ``test/<scorer>`` for each name in `scoring` (sklearn scorer names),
  or ``test/score`` (`estimator.score`) without it;
- with `cv` = (X, y) (and `folds`, default 5): ``cv/<scorer>_mean`` and ``_std`` from
  ``cross_val_score`` on a clone;
- every score is logged with `studio.log` (step `step`) and returned as a dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from studio.integrations import _common

try:
    import sklearn  # noqa: F401
except ImportError:
    from studio.exceptions import MissingDependencyError

    raise MissingDependencyError("studio.integrations.sklearn needs scikit-learn: pip install scikit-learn") from None


def log_estimator(
    estimator: Any,
    X: Any = None,
    y: Any = None,
    *,
    scoring: str | Sequence[str] | None = None,
    cv: tuple[Any, Any] | None = None,
    folds: int = 5,
    step: int | None = None,
    prefix: str = "",
) -> dict[str, float]:
    """Record `estimator`'s params and scores (see the module docstring); returns the scores."""
    from sklearn.base import clone
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import cross_val_score

    if not hasattr(estimator, "get_params"):
        raise TypeError(f"log_estimator takes a scikit-learn estimator, got {type(estimator).__name__}")
    exp = _common.experiment()
    params = {"estimator": type(estimator).__name__, **estimator.get_params(deep=True)}
    _common.log_params({f"{prefix}{k}": v for k, v in params.items()}, exp)
    names = [scoring] if isinstance(scoring, str) else list(scoring or [])
    scores: dict[str, float] = {}
    if X is not None and y is not None:
        if names:
            for name in names:
                scores[f"{prefix}test/{name}"] = float(get_scorer(name)(estimator, X, y))
        else:
            scores[f"{prefix}test/score"] = float(estimator.score(X, y))
    if cv is not None:
        cx, cy = cv
        for label in names or ["score"]:
            scorer = None if label == "score" and not names else label
            values = cross_val_score(clone(estimator), cx, cy, cv=folds, scoring=scorer)
            scores[f"{prefix}cv/{label}_mean"] = float(values.mean())
            scores[f"{prefix}cv/{label}_std"] = float(values.std())
    if scores:
        _common.log_metrics(scores, step)
    return scores


__all__ = ["log_estimator"]
