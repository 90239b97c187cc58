"""The runtime the compiled model consults at every call: schedule, step plans, kept values."""

from gocopt.runtime.runtime import CacheRuntime
from gocopt.runtime.state import RunState

__all__ = ["CacheRuntime", "RunState"]
