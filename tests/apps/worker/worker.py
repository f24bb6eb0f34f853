"""A worker: does a unit of work every 0.5 s and says so; SIGTERM stops it after the unit.

Each unit prints "<TEXT> (<version>): unit N done". On SIGTERM the unit in progress is finished,
then it prints "worker stopping" (the last line of its log) and exits 0.
"""

import os
import signal
import time

TEXT = "Worker, first release"
UNIT_SECONDS = 0.5

stopping = False


def stop(signum: int, frame: object) -> None:
    global stopping
    stopping = True


def main() -> int:
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    version = os.environ.get("APP_VERSION", "no version")
    print(f"{TEXT} ({version}): started", flush=True)
    unit = 0
    while not stopping:
        unit += 1
        # The unit of work: a signal does not cut it short (the sleep resumes, PEP 475).
        time.sleep(UNIT_SECONDS)
        print(f"{TEXT} ({version}): unit {unit} done", flush=True)
    print("worker stopping", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
