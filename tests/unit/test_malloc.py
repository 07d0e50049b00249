import platform
import time

import pytest

from flight_server import malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc settings")
def test_configure_is_accepted_by_glibc():
    assert malloc.configure() is True


def test_idle_trimmer_trims_once_after_activity_stops():
    value = [0]
    trimmer = malloc.IdleTrimmer(lambda: value[0], idle_seconds=0.1, check_every=0.02).start()
    try:
        time.sleep(0.3)
        assert trimmer.trims == 0  # no activity yet: nothing to give back
        value[0] = 1
        deadline = time.monotonic() + 5
        while trimmer.trims == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert trimmer.trims == 1
        time.sleep(0.3)
        assert trimmer.trims == 1  # once per quiet period, not every check
    finally:
        trimmer.stop()
