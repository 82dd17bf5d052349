"""The study as a queue: storage and its locks (``storage``), the journal file (``journal``), every use of Optuna's
private API (``optuna_adapter``), is a worker alive (``liveness``), create / enqueue / reconcile (``study``), per-cell
TPE and pruning (``search``), claiming trials and packing them into fused runs (``packing``) and ``open_study``
(``access``). Imports ``spec``."""
