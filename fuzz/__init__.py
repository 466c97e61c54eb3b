"""Fuzz targets for the parsers that read hostile input; ``make fuzz`` runs each for a while."""
