"""The runtime the rewritten model consults at every site: schedule, step, queues, GOC."""

from gocopt.runtime.goc import GOCConfig, extrapolate
from gocopt.runtime.runtime import CacheRuntime
from gocopt.runtime.state import RunState

__all__ = ["CacheRuntime", "GOCConfig", "RunState", "extrapolate"]
