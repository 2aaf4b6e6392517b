import time

import kdlab


def test_median_seconds_warms_up_then_times_each_run_round_robin():
    calls = []

    def slow():
        calls.append("slow")
        time.sleep(0.004)

    def fast():
        calls.append("fast")

    seconds = kdlab.median_seconds({"slow": slow, "fast": fast}, 3)
    assert calls == ["slow", "fast"] * 4  # one warm-up each, then round-robin
    assert seconds["slow"] >= 0.004 > seconds["fast"] >= 0
