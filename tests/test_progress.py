"""The pure progress arithmetic, on a fake clock: token counts, the bar, speed, the time left by phase."""
import pytest

from webapp.estimates import History, Run
from webapp.progress import BAR_CAP, Meter, advance_percent, estimate_tokens, final_speed
from webapp.web.events import job_event

LEARNED = History(runs=[Run(n) for n in (100, 120, 150, 200, 250)], speeds=[50.0], loads_cold=[4.0],
                  loads_warm=[0.5], prompt_rates=[0.001])


@pytest.mark.parametrize(("piece", "tokens"), [("", 0), ("\n", 1), (" a", 1), (" conversation", 1),
                                                 (" the quick brown fox jumps", 5)])
def test_estimate_tokens_counts_merged_chunks_as_several(piece, tokens):
    assert estimate_tokens(piece) == tokens


def test_the_bar_moves_with_every_token_never_back_never_to_100():
    assert advance_percent(0.0, 0, 50, 100) == pytest.approx(BAR_CAP / 2, abs=0.01)
    assert advance_percent(45.0, 50, 50, 100) == 45.0          # no new token: the bar stays
    assert advance_percent(45.0, 50, 40, 100) == 45.0          # never backwards
    assert advance_percent(0.0, 0, 10_000, 100) == BAR_CAP < 100
    assert advance_percent(0.0, 0, 5, 0) == 0.0
    assert advance_percent(89.0, 10_000, 10_001, 100_000_000) == 89.01  # a visible step at least


def test_a_job_past_its_expected_length_keeps_a_moving_bar_and_an_eta():
    meter = Meter(started=0.0, history=LEARNED)
    meter.add(1, 1.0)
    bars, etas = [], []
    for second in range(2, 40):  # 20 tok/s for 38 s: 760 tokens, far past every earlier run
        meter.add(20, float(second))
        fields = meter.sample(float(second))
        bars.append(fields["progress_percentage"])
        etas.append(fields["estimated_time_remaining"])
    assert all(b > a for a, b in zip(bars, bars[1:], strict=False)), bars
    assert bars[-1] < 90 and None not in etas
    assert fields["expected_tokens"] > fields["current_tokens"]


def test_time_left_before_the_first_token_is_the_learned_load_then_the_answer():
    cold = Meter(started=0.0, history=LEARNED, cold=True, prompt_tokens=1000).sample(1.0)
    warm = Meter(started=0.0, history=LEARNED, cold=False, prompt_tokens=0).sample(0.0)
    answer = 150 / 50 * 1000  # the median length at the learned speed
    assert cold["estimated_time_remaining"] == answer + 4000 + 1000 - 1000
    assert warm["estimated_time_remaining"] == answer + 500
    assert cold["estimated_time_remaining_low"] <= cold["estimated_time_remaining"] <= \
        cold["estimated_time_remaining_high"]


def test_the_first_readings_use_the_learned_speed_then_the_runs_own():
    meter = Meter(started=0.0, history=LEARNED)
    meter.add(1, 0.0)
    meter.add(1, 0.1)
    early = meter.sample(0.2)  # 2 tokens in 0.2 s: too little to trust
    assert early["estimated_time_remaining"] == int((150 - 2) / 50 * 1000)
    for second in range(1, 4):
        meter.add(10, float(second))
        later = meter.sample(float(second))
    # Now the run's own ~10 tok/s: the rest of the conditional median (150) at that speed.
    assert later["expected_tokens"] == 150 and later["tokens_per_second"] < 20  # not the learned 50
    assert later["estimated_time_remaining"] == pytest.approx((150 - 32) / later["tokens_per_second"] * 1000, rel=0.01)


def test_no_history_means_no_time_left_but_a_moving_bar():
    meter = Meter(started=0.0)
    meter.add(5, 1.0)
    fields = meter.sample(2.0)
    assert fields["estimated_time_remaining"] is None and fields["progress_percentage"] > 0


def test_meter_count_never_passes_num_predict():
    meter = Meter(started=0.0, limit=10)
    meter.add(8, 1.0)
    meter.add(5, 2.0)
    assert meter.tokens == 10


def test_meter_speed_excludes_the_model_load():
    meter = Meter(started=0.0)
    meter.sample(10.0)           # ten seconds of loading, no token yet
    meter.add(1, 10.0)           # first token at t=10
    for second in range(1, 5):
        meter.add(20, 10.0 + second)
        fields = meter.sample(10.0 + second)
    assert fields["tokens_per_second"] == pytest.approx(81 / 4, rel=0.01)
    assert fields["elapsed_time"] == 14_000
    assert fields["current_tokens"] == 81


def test_meter_speed_is_a_recent_window():
    meter = Meter(started=0.0)
    meter.add(1, 0.0)
    for second in range(1, 21):  # 10 tok/s for 20 s, then 40 tok/s
        meter.add(10 if second <= 10 else 40, float(second))
        fields = meter.sample(float(second))
    assert fields["tokens_per_second"] == pytest.approx(40, rel=0.05)


def test_final_speed_is_ollamas_own_figure():
    assert final_speed(237, 4_289_432_000) == pytest.approx(55.25, abs=0.01)
    assert final_speed(0, 100) is None and final_speed(10, None) is None


def test_sse_event_shapes():
    snap = {"status": "completed", "total_tokens": 10, "prompt_tokens": 4, "completion_tokens": 6,
            "elapsed_time": 900, "tokens_per_second": 12.5}
    assert job_event(snap) == ("complete", snap)
    assert job_event({"status": "cancelled", "error_message": None}) == (
        "error", {"status": "cancelled", "error": "cancelled"})
    name, data = job_event({"status": "queued", "queue_position": 3, "timestamp": 1})
    assert name == "progress" and data["queue_position"] == 3 and data["status"] == "queued"
