"""Run every benchmark script in turn (``make bench``); each prints its own ratios and times.

Pass ``--quick`` to run the cheaper variants where a script has one.
"""

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "bench_kss.py": ["--quick"],
    "bench_sgd.py": [],
    "bench_locality.py": ["--quick"],
    "bench_sampling.py": ["--quick"],
    "bench_mlp.py": ["--quick"],
    "bench_cir.py": [],
}


def main(argv):
    quick = "--quick" in argv
    failed = []
    for script, quick_args in SCRIPTS.items():
        args = quick_args if quick else []
        print(f"\n===== {script} {' '.join(args)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / script), *args])
        print(f"===== {script}: exit {rc}, {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(script)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
