"The fault bench in its short form: one SIGKILL at a random point of each job, then the same result as an unbroken run."
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parents[1] / 'bench'))
from faults import measure


def test_killed_jobs_finish_as_if_never_stopped():
    for r in measure(kills=1, n=24, seed=1):
        assert r['same'] == r['kills'], r
