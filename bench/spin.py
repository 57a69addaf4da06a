#!/usr/bin/env python3
"""What the machine takes from this core: spins for SECONDS reading the clock, and counts
every gap over 0.5 ms between two reads as time the core was taken from it (by another
process, or on a VM by the host). Pin it with taskset. Prints three numbers: ms lost a
second, gaps over 2 ms, the longest gap in ms. Used by bench/run and bench/profile."""

import sys
import time

duration = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
lost = longest = big = 0
now = time.perf_counter_ns
prev = now()
end = prev + int(duration * 1e9)
while prev < end:
    t = now()
    gap = t - prev
    if gap > 500_000:
        lost += gap
        big += gap > 2_000_000
        longest = max(longest, gap)
    prev = t
print(f"{lost / 1e6 / duration:.3f} {big} {longest / 1e6:.3f}")
