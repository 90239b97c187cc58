"""Calibration runs of the uncached model: per-(step, site) statistics and inflection points."""

from gocopt.calibrate.inflection import detect_inflections, direction_by_step
from gocopt.calibrate.statistics import Calibration, calibrate, first_non_finite

__all__ = ["Calibration", "calibrate", "detect_inflections", "direction_by_step", "first_non_finite"]
