"""Cache schedules: the step × site mask, named baselines, their cost."""

from gocopt.schedule.named import named_schedule
from gocopt.schedule.schedule import Schedule, all_compute

__all__ = ["Schedule", "all_compute", "named_schedule"]
