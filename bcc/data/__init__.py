"""A dataset directory and everything derived from it: the contract, the one image reader, consensus, folds,
the synthetic benchmark and the adapters from public releases."""

__all__ = ["cache", "consensus", "contract", "conversion", "csvfile", "derm7pt", "errors", "folds",
           "ham10000", "images", "isic", "merge", "paths", "ph2", "public", "schema", "stamps", "synthetic",
           "table"]
