"""Runs a command and samples its resident memory every 50 ms.

    python3 bench/rss.py <command> [args...]

Prints the exit status, wall time, the peak RSS and when it happened, then
the largest sample of every whole second, so a peak can be placed in the
command's phases. The command's output is discarded.
"""
import subprocess
import sys
import time


def main():
    t0 = time.time()
    p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []
    while p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS"):
                        samples.append((time.time() - t0, int(line.split()[1]) // 1024))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.05)
    wall = time.time() - t0
    if not samples:
        print(f"rc={p.returncode} wall={wall:.2f}s (no samples)")
        return
    at, peak = max(samples, key=lambda s: s[1])
    print(f"rc={p.returncode} wall={wall:.2f}s peak={peak}MB at {at:.2f}s")
    by_second = {}
    for t, rss in samples:
        by_second[int(t)] = max(by_second.get(int(t), 0), rss)
    print(" ".join(f"{k}:{v}" for k, v in sorted(by_second.items())))


if __name__ == "__main__":
    main()
