"""Test-sized compile settings: every phase of a compile runs, at a fraction of its CPU time.

The surrogate study's own cost is Optuna's TPE, which grows with the square of its trials: its
default 1000 take about 40 s of CPU per budget on these cores, model work or not. The tests that
exercise a compile's mechanics (planning, sharing, resuming, stamping) rank 100.
"""

from gocopt.search.effort import Effort

SURROGATE_TRIALS = 100
QUICK = Effort(surrogate_trials=SURROGATE_TRIALS)
