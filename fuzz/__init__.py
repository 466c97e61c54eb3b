"""Fuzz targets for the parsers that read hostile input; ``make fuzz`` runs each for a while
(``python -m fuzz.run``, whose options are read in ``fuzz/cli.py``)."""
