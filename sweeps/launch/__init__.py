"""Launching a sweep: the `sweep` and `studies` commands (``sweep``, ``cli``), the launchers that start the workers
(``launchers``: local processes, or a Slurm job array through ``slurm``), progress and the
closing table (``monitor``), the dry-run estimate (``estimate``), the W&B summary (``summary``) and the
``--until-decided`` loop (``decide``). Imports ``run``, ``queue``, ``verdicts`` and ``spec``."""
