"""`studio import mlflow --tracking-uri URI [--experiment NAME]...`: bring history from another tracker."""

from __future__ import annotations

import click

from studio.cli.common import config_option, context, json_option, print_json


@click.group("import", short_help="Import runs from another tracker (MLflow).")
def import_() -> None:
    """Import runs recorded by another tracker into studio."""


@import_.command("mlflow")
@config_option
@json_option
@click.option("--tracking-uri", required=True, metavar="URI",
              help="The MLflow tracking URI: sqlite:///mlflow.db, file:///path/mlruns, http://host:5000.")
@click.option("--experiment", "experiments", multiple=True, metavar="NAME",
              help="Only this MLflow experiment (repeatable; default: all of them).")
@click.option("--no-artifacts", is_flag=True, help="Copy params, metrics and tags only.")
def mlflow(config: str | None, as_json: bool, tracking_uri: str, experiments: tuple[str, ...], no_artifacts: bool) -> None:
    """Copy MLflow runs (params, metric histories, tags, status, times, artifacts) into studio.

    Each run becomes the experiment `mlflow-<run id>` in a project named after its MLflow
    experiment; importing again skips runs already imported."""
    from studio.api.import_mlflow import import_mlflow

    ctx = context(config)
    echo = None if as_json else (lambda key, project: click.echo(f"imported {key} ({project})", err=True))
    report = import_mlflow(ctx, tracking_uri, list(experiments), with_artifacts=not no_artifacts, progress=echo)
    if as_json:
        print_json(report.to_dict())
    else:
        click.echo(f"{len(report.imported)} imported, {len(report.skipped)} already there, {len(report.failed)} failed")
        for run_id, why in report.failed.items():
            click.echo(f"  failed {run_id}: {why}", err=True)
    if report.failed:
        raise SystemExit(1)
