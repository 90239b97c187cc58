"""The caches users would pick instead of gocopt, rebuilt here so one benchmark can run them all.

Each is a faithful small version of its method's rule, run on gocopt's reference DiT:

* :mod:`.taylorseer` — TaylorSeer: its warm-up + every-N shape and its forecast (a truncated
  Taylor series of backward differences of the *computed* values, orders 1–2), as its code
  computes them; a predictor for gocopt's step plans;
* :mod:`.smoothcache` — SmoothCache-style: calibration errors, skip while the accumulated error
  since the last computation stays under a threshold, threshold bisected to the budget;
* :mod:`.first_block_cache` — FirstBlockCache / TeaCache-style dynamic cache: always run the first
  block, skip the rest when its residual changed less than a threshold (probe cost counted).

FORA (interval-K), FORA + GOC with the paper's settings and the L2C-like schedule are gocopt's
own named schedules (:mod:`gocopt.schedule.named`).
"""
