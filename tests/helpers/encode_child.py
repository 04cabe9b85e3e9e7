"""``simcse <command> ...`` in its own process, for tests that kill it (SIGKILL) at a chosen file operation.

Usage: ``python encode_child.py encode --model ... -o FOLDER ...``. With ``SIMCSE_CHILD_PAUSE`` set, the
child blocks before the first matching ``os.replace`` / ``shutil.rmtree`` (see ``train_child.pause_at``); with
``SIMCSE_TEST_GROUPS_LEFT`` set, it reports at exit what process groups are left (see ``train_entry``); with
``SIMCSE_CHILD_SLOW=S``, every ``os.replace`` (a shard, its record, the manifest put in place) waits S seconds
first, so that a test's kill "after one more shard" lands before the next one even on a loaded machine.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_child import pause_at
from train_entry import report_groups_at_exit

from simcse.cli import main

if __name__ == "__main__":
    if os.environ.get("SIMCSE_TEST_GROUPS_LEFT"):
        report_groups_at_exit(os.environ["SIMCSE_TEST_GROUPS_LEFT"])
    if os.environ.get("SIMCSE_CHILD_SLOW"):
        import time

        delay, real_replace = float(os.environ["SIMCSE_CHILD_SLOW"]), os.replace

        def slow_replace(*args, **kwargs):
            time.sleep(delay)
            return real_replace(*args, **kwargs)

        os.replace = slow_replace
    if os.environ.get("SIMCSE_CHILD_PAUSE"):
        pause_at(os.environ["SIMCSE_CHILD_PAUSE"], os.environ["SIMCSE_CHILD_PAUSED"])
    sys.exit(main(sys.argv[1:]))
