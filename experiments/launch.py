"""Where ``train`` and ``sweep`` run: here, or as SageMaker training jobs. One function, one choice.

``backend`` is a config group like any other, so where a run happens is an override
(``backend=sagemaker``), not a different command; the CLI calls ``launch`` and prints what it returns.
Heavy imports stay inside the backends so a config mistake is reported before torch is imported.
"""

from __future__ import annotations

from omegaconf import DictConfig

VERBS = ("train", "sweep")


def launch(cfg: DictConfig, verb: str, overrides: list[str], dry_run: bool = False) -> list[str]:
    """Run ``verb`` on ``cfg.backend``; returns the lines to show the user.

    ``overrides`` are the command line's: SageMaker jobs and local sweep workers re-compose the config
    from them, so they see exactly what this process saw.
    """
    if verb not in VERBS:
        raise ValueError(f"launch: verb must be one of {VERBS}, not {verb!r}")
    if cfg.backend.name == "sagemaker":
        from experiments.sagemaker_jobs.submit import submit

        return submit(cfg, verb, overrides, dry_run)
    if dry_run:
        from conf.loader import ConfigError

        raise ConfigError("--dry-run prints SageMaker job definitions: add backend=sagemaker")
    return _run_here(cfg, verb, overrides)


def _run_here(cfg: DictConfig, verb: str, overrides: list[str]) -> list[str]:
    from lightning_app.trainer import leave_process_group

    if verb == "sweep":
        from experiments.sweep import run_sweep

        run_sweep(cfg, overrides)  # prints its own live table and summary
        leave_process_group()
        return []
    from lightning_app.train import train

    result = train(cfg)
    leave_process_group()
    if not result.run_id:  # a DDP rank other than 0: rank 0 reports
        return []
    lines = [f"run {result.run_id}: best checkpoint {result.best_checkpoint}"]
    lines += [f"  {name} = {result.metrics[name]:.4f}" for name in sorted(result.metrics)]
    return lines
