"""Cold start and peak RSS of one engine, in a fresh process (run by run.py; prints one JSON line).

python benchmarks/child.py ENGINE SPEC_JSON CACHE THREADS
"""

import time

T_START = time.monotonic()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    name, spec_text, cache, threads = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    sys.path.insert(0, str(Path(__file__).parent))
    import numpy as np
    from engines import module
    from specs import spec_from_json

    spec = spec_from_json(spec_text)
    engine = module(name).load(name, spec, cache, threads)
    t_load = time.monotonic()
    engine.embed(["Patient admitted with chest pain and shortness of breath."])
    t_first = time.monotonic()
    rss_first = vm_hwm_mb()
    ids = np.full((32, 128), 1000, dtype=np.int64)
    ids[:, 0], ids[:, -1] = 2, 3
    engine.hidden(ids, np.ones_like(ids))
    print(
        json.dumps(
            {
                "t_start": T_START,
                "t_load": t_load,
                "t_first": t_first,
                "rss_first_mb": rss_first,
                "rss_peak_mb": vm_hwm_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
