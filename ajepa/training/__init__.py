"""Pre-training: the wrapper that trains an encoder with an objective, the loop, its state and its run files.

- :mod:`~ajepa.training.model`: :class:`AudioJEPA` (context encoder, EMA target encoder, predictor, objective).
- :mod:`~ajepa.training.loop`: :func:`train`, the step and the loop; :mod:`~ajepa.training.state` what it mutates.
- :mod:`~ajepa.training.config`: the typed run schema (``RunConfig``), one dataclass per Hydra group.
- :mod:`~ajepa.training.loader`: the dataset from the config, per-rank masks, the resumable loader.
- :mod:`~ajepa.training.optim`, :mod:`~ajepa.training.schedules`: AdamW and per-step schedules.
- :mod:`~ajepa.training.run_files`, :mod:`~ajepa.training.run_guard`: metrics, checkpoints, resume, the lock.
- :mod:`~ajepa.training.monitors`, :mod:`~ajepa.training.plots`, :mod:`~ajepa.training.transfer_probe`.
- :mod:`~ajepa.training.distributed`: DDP helpers.

Importing this package imports none of them (``import ajepa.training.config`` stays light).
"""
