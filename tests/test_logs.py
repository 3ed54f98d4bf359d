"""The logging set-up shared by the command line and the benchmark's spawned jobs."""

import subprocess
import sys

SCRIPT = """
from modaltune.logs import setup_logging
setup_logging(tag="[job 7]")
import logging
from lightning.pytorch.utilities.rank_zero import rank_zero_info
rank_zero_info("GPU available: False, used: False")
logging.getLogger("modaltune.benchmark.runner").info("benchmark cell abmil fold0_seed0")
"""


def test_spawned_job_prints_our_messages_once_and_not_lightnings():
    """A job process (lightning imported after the set-up, as in a spawned worker) prints our message
    once with its tag, and none of Lightning's INFO chatter (it used to print it twice)."""
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "GPU available" not in text
    assert text.count("benchmark cell abmil") == 1
    assert "INFO [job 7] modaltune.benchmark.runner: benchmark cell abmil fold0_seed0" in text
