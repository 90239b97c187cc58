"""gocopt's exceptions: one root, and subclasses that also inherit the matching builtin.

Every message names what was wrong (node, site, field) and what to do about it.
"""


class GocoptError(Exception):
    """Root of every error gocopt raises on purpose."""


class TraceError(GocoptError, ValueError):
    """The model's structure could not be turned into cache sites."""


class PassError(GocoptError, RuntimeError):
    """A graph pass failed; the message names the pass."""


class ScheduleError(GocoptError, ValueError):
    """A schedule does not fit the model, the sampler or the run it is used in."""


class CalibrationError(GocoptError, RuntimeError):
    """The uncached model's own run cannot be measured (non-finite values): the message names the
    step and site where they first appear."""


class NumericalError(GocoptError, ArithmeticError):
    """A numerical solve was handed inputs it cannot take (non-finite, mis-shaped); names the solve."""


class ArgumentError(GocoptError, TypeError):
    """An argument that does not apply to what it was passed with (a model option given with a
    diffusers pipeline, say): named and refused, never silently dropped."""


class GocoptExperimentalWarning(UserWarning):
    """A feature whose behaviour may still change (cross-attention sites, for example)."""
