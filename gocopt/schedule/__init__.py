"""Cache schedules: the step × site mask, GOC parameters, step plans, named baselines, their cost.

Pure data: nothing here knows the compiled model or the runtime.
"""

from gocopt.schedule.goc import GOCConfig
from gocopt.schedule.named import named_schedule
from gocopt.schedule.schedule import Schedule, all_compute

__all__ = ["GOCConfig", "Schedule", "all_compute", "named_schedule"]
