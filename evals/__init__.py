"""Short names for the evaluation programs in a checkout: ``python -m evals.<name>`` runs ``ajepa.evals.<name>``.

The evaluations themselves live in :mod:`ajepa.evals` (installed with the package; their dependencies come with
``pip install ajepa[eval]``). This folder is not part of the wheel.
"""
