"""Thin adapters from ML frameworks to studio's tracking API (`studio.log`, params, artifacts).

Each module imports its framework only when used (`import studio` never does):

    studio.integrations.lightning      StudioLogger        (PyTorch Lightning `Logger`)
    studio.integrations.keras          StudioCallback      (Keras 3 `Callback`)
    studio.integrations.transformers   StudioCallback      (Hugging Face `TrainerCallback`,
                                                            also ``report_to="studio"``)
    studio.integrations.sklearn        log_estimator()     (params + scores in one call)

They work under `studio run` (recording into its experiment) and in a plain ``python``
process, where the first call starts a workbook experiment (`studio.init()`) unless one is
already open. TensorBoard event files need no adapter: under `studio run` the `tb` artifact's
scalars are imported (see docs/metrics.md).
"""
