import sys, time, cProfile, pstats, inspect
sys.path.insert(0, "benchmarks")
import numpy as np, torch
from sampling_bench_v2 import _graph
from kgclip.sampling import TripletLoader
torch.set_num_threads(1)
rng = np.random.default_rng(0)
views = int(sys.argv[1]); B = int(sys.argv[2]); fan = [int(x) for x in sys.argv[3].split(",")]
g = _graph(rng, 1_000_000, 10_000_000, views=views)
kw = {"views": "random"} if views else {}
t0 = time.perf_counter(); loader = TripletLoader(g, B, fanouts=fan, seed=0, **kw); print("build", time.perf_counter() - t0)
it = iter(loader); next(it)
n = 200 if B < 500 else 20
t0 = time.perf_counter()
for _ in range(n): next(it)
print(n / (time.perf_counter() - t0), "b/s")
if len(sys.argv) > 4:
    pr = cProfile.Profile(); pr.enable()
    for _ in range(n): next(it)
    pr.disable(); pstats.Stats(pr).sort_stats("tottime").print_stats(14)
