"""Calibration defaults, one place for the API, the CLI and the pipeline (no torch: the pipeline's config
reads them)."""

CALIBRATION_METHODS = ("minmax", "percentile")
# Each tensor's range from the (100-p, p) percentiles of each calibration batch, averaged, clips the rare
# outliers min/max stretches its 256 steps over: int8 top-1 was ahead of min/max in all five comparisons on
# four zoo subnets, by 0.06-0.26 points (benchmarks/calibration.py, docs/quantization.md)
DEFAULT_METHOD = "percentile"
DEFAULT_PERCENTILE = 99.99
# a percentile must lie above this: at or below it the (100-p, p) range is empty or inverted
PERCENTILE_FLOOR = 50.0
DEFAULT_CALIBRATION_IMAGES = 256
