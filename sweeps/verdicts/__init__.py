"""What the results say: intervals and verdicts (``inference``), what a grid compares (``comparisons``), did a run
learn (``dead``), completed trials as a table (``results``), the recorded ``--until-decided`` rounds (``rounds``)
and the summary's figures (``figures``). Imports ``spec``; ``reports`` and ``launch`` read it."""
