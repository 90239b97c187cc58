"""Datasets that ship inside installed packages, so everything here works offline."""

from gocopt.data.digits import DIGITS_CLASSES, load_digits_images, train_test_split_indices

__all__ = ["DIGITS_CLASSES", "load_digits_images", "train_test_split_indices"]
