"""How much this host delays a sleeping thread: 0.5 ms sleeps N times (default 5,000), and the
overshoot's percentiles. On a quiet 2-core machine the overshoot's tail is what any open-loop
latency p99 measured here cannot go below (see BENCHMARKS.md, "Device velocity through the
feature store's per-device index").

    python3 bench/scripts/sleep_jitter.py [N]
"""
import sys
import time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
d = []
for _ in range(n):
    t = time.perf_counter()
    time.sleep(0.0005)
    d.append((time.perf_counter() - t) * 1e3 - 0.5)
d.sort()
print(
    "sleep overshoot ms: p50 %.3f p99 %.3f p99.9 %.3f max %.3f; >2 ms: %d of %d"
    % (d[n // 2], d[int(n * 0.99)], d[int(n * 0.999)], d[-1], sum(x > 2 for x in d), n)
)
