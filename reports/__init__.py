"""reports: tables, figures and checked claims from a study and its run records, with the papers' numbers.

Reads a study (``sweeps``' Optuna storage) and the run records of its trials; nothing here trains or writes to the
study. Entry points: `build_report` (also `resnet-ablate report STUDY`), `paper_value`, `load_study`.
"""
from .cli import FORMATS, build_report
from .paper import paper_value

__all__ = ["FORMATS", "build_report", "paper_value", "load_study"]


def load_study(*args, **kwargs):
    """See `reports.study_reader.load_study`."""
    from .study_reader import load_study as _load  # lazy: `import reports` does not load pandas

    return _load(*args, **kwargs)
