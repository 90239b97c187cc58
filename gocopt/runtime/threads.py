"""The same intra-op arithmetic in every thread that calls a loaded model.

``torch.set_num_threads(n)`` records ``n`` for the process and sets OpenMP's and MKL's thread count
of the *calling* thread only. A thread that Python starts afterwards keeps those libraries' default
(one per core) while ``torch.get_num_threads()`` reports ``n`` in it; torch applies ``n`` there
only when the thread first enters one of its own parallel regions, and a kernel that runs before
that (a BLAS or oneDNN call) splits its reductions for the default count, so it rounds differently.
Seen (issue #35): at one intra-op thread, a run of the reference schedule made on a worker thread
differed from the same run on the main thread by 4.9e-6, concurrent or not, and setting the thread
count in the worker thread made it exact. A loaded model promises that runs made at the same time
equal the same runs made one after the other, so every call first makes its thread use the
process's setting (:func:`match_intra_op_threads`), whatever ran in that thread before: one C call
and a comparison, on the host, per model call.
"""

from __future__ import annotations

import threading

import torch

_APPLIED = threading.local()  # the intra-op thread count this thread has applied, once it has


def match_intra_op_threads() -> None:
    """Apply the process's intra-op thread count (``torch.get_num_threads()``) in the calling thread,
    unless this thread has already applied that count."""
    wanted = torch.get_num_threads()
    if getattr(_APPLIED, "threads", None) != wanted:
        torch.set_num_threads(wanted)
        _APPLIED.threads = wanted


__all__ = ["match_intra_op_threads"]
