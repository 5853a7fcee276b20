"""Command-line programs other than training: ``python -m ajepa embed`` and ``python -m ajepa export``.

They live here, not as ``ajepa.embed`` / ``ajepa.export`` modules, so that the function :func:`ajepa.embed` is never
shadowed by a module of the same name. Training keeps its own entry point, ``python -m ajepa.train`` (Hydra).
"""
