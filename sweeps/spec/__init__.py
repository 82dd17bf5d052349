"""What to run: a grid file checked and expanded (``grid``), its cells and their ids (``cells``), who a cell is
(``identity``), the grid axes as Optuna params (``params``), the ``launcher:`` section (``launcher``) and the study
format (``study_format``: what a sweep writes into its study and readers read back). Imports only ``resnet_core``."""
