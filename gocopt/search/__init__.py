"""Budget-constrained schedule search: the space, the objective, the Optuna study."""

from gocopt.search.graphs import DEFAULT_MAX_GRAPHS, check_max_graphs, limit_graphs
from gocopt.search.objective import ScheduleObjective, SearchSet, suggest
from gocopt.search.space import Candidate, SpaceContext, build_goc, build_mask, check_budget, fill_to_budget
from gocopt.search.study import SEED_CANDIDATES, SearchResult, run_search

__all__ = ["DEFAULT_MAX_GRAPHS", "SEED_CANDIDATES", "Candidate", "ScheduleObjective", "SearchResult", "SearchSet",
           "SpaceContext", "build_goc", "build_mask", "check_budget", "check_max_graphs", "fill_to_budget",
           "limit_graphs", "run_search", "suggest"]
