"""A bounded load test: K clients sampling at the same time from one loaded model, or one model each.

    python -m benchmarks.serving                 # reference model, DDIM-20 schedule at 0.5, K = 1, 2, 4

Each client is a thread that makes ``--requests`` requests (4 images each, its own seeds, DDIM-20,
CFG) one after the other; all clients start together. Two arms per K, each in a fresh process (so
its peak resident memory is its own), one after the other: **shared** — one
``gocopt.load(model, schedule)`` for every client — and **per client** — one loaded model each
(the only safe way before runs had their own state). Every request's images are compared with the
same request made alone, beforehand, in the same process: the largest difference must be 0.
Reports images per second (and the ratio shared / per client), that deviation, the most kept-value
bytes seen at once, and the process's peak RSS. Writes ``docs/benchmarks/serving.{json,md}``.
"""

from __future__ import annotations

import argparse
import resource
import threading
import time

import torch

from benchmarks.fresh_process import run_row
from benchmarks.threads import bench_threads
from gocopt.atomic import atomic_write_text
from gocopt.report import environment, markdown_table, write_json

SCHEDULE = "schedules/reference_ddim20_b0.50.json"
IMAGES = 4


def arm(clients: int, shared: bool, requests: int, threads: int) -> dict:
    """One arm, in this process (run by :func:`in_fresh_process`)."""
    import gocopt
    from gocopt.models import reference
    from gocopt.sampling import DDIMSampler, initial_noise

    torch.set_num_threads(threads)
    sampler = DDIMSampler(steps=20, guidance_scale=4.0, clip_denoised=True)
    model = reference().eval()
    models = [gocopt.load(model, SCHEDULE, sampler=sampler)] * clients if shared else \
        [gocopt.load(model, SCHEDULE, sampler=sampler) for _ in range(clients)]

    def request(client: int, k: int):
        seed = 1000 * client + IMAGES * k
        return torch.arange(seed, seed + IMAGES) % 10, initial_noise(range(seed, seed + IMAGES), (1, 8, 8))

    with torch.no_grad():
        alone = {(c, k): sampler.sample(models[c], *request(c, k), num_classes=10)
                 for c in range(clients) for k in range(requests)}
    results: dict = {}
    peak_kept = [0]
    stop = threading.Event()

    def watch():  # the most kept-value bytes held at once, every model together
        while not stop.is_set():
            peak_kept[0] = max(peak_kept[0], sum(m.runtime.memory_bytes() for m in set(models)))
            time.sleep(0.002)

    def client(c: int):
        with torch.no_grad():
            for k in range(requests):
                results[c, k] = sampler.sample(models[c], *request(c, k), num_classes=10)

    watcher = threading.Thread(target=watch)
    workers = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    watcher.start()
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - started
    stop.set()
    watcher.join()
    deviation = max(float((results[key] - alone[key]).abs().max()) for key in alone)
    return {"clients": clients, "arm": "shared" if shared else "per client", "requests": clients * requests,
            "images": clients * requests * IMAGES, "seconds": seconds,
            "images_per_s": clients * requests * IMAGES / seconds, "max_deviation": deviation,
            "peak_kept_bytes": peak_kept[0], "models_loaded": len(set(map(id, models))),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def in_fresh_process(clients: int, shared: bool, args) -> dict:
    return run_row("benchmarks.serving", "arm", clients, shared, args.requests, args.threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,2,4")
    parser.add_argument("--requests", type=int, default=8, help="requests per client")
    parser.add_argument("--threads", type=int, default=bench_threads(), help="torch intra-op threads of the process")
    parser.add_argument("--out", default="docs/benchmarks/serving")
    args = parser.parse_args(argv)
    rows = []
    for k in (int(c) for c in args.clients.split(",")):
        per_client = in_fresh_process(k, False, args)
        shared = in_fresh_process(k, True, args)
        shared["vs_per_client"] = shared["images_per_s"] / per_client["images_per_s"]
        per_client["vs_per_client"] = 1.0
        rows += [per_client, shared]
    env = environment()
    settings = {"schedule": SCHEDULE, "images_per_request": IMAGES, "requests_per_client": args.requests,
                "threads": args.threads}
    write_json(f"{args.out}.json", {"rows": rows, "settings": settings, "environment": env})
    for r in rows:
        r["peak_rss_mib"] = r["peak_rss_bytes"] / 2**20
        r["peak_kept_mib"] = r["peak_kept_bytes"] / 2**20
    text = (f"# Serving: K clients on one loaded model vs one model each (reference model, `{SCHEDULE}`)\n\n"
            f"{env['device']}, torch {env['torch']}, {args.threads} intra-op threads; each client makes "
            f"{args.requests} requests of {IMAGES} images (DDIM-20, CFG) in a row, all clients at once; each arm in "
            "a fresh process, one after the other (`python -m benchmarks.serving`). *max deviation*: the largest "
            "pixel difference between a request's images and the same request made alone.\n\n"
            + markdown_table(rows, [("clients", "clients", ""), ("arm", "models", ""),
                                    ("models_loaded", "loaded", ""), ("images_per_s", "images/s", ".1f"),
                                    ("vs_per_client", "vs one model each", ".2f"),
                                    ("max_deviation", "max deviation", "g"), ("peak_kept_mib", "peak kept MiB", ".2f"),
                                    ("peak_rss_mib", "peak RSS MiB", ".0f")]))
    atomic_write_text(f"{args.out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
