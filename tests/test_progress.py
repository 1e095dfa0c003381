"""The pure progress arithmetic: edge cases of estimates, percent, speed and ETA."""
import pytest

from webapp import progress
from webapp.progress import Meter, estimate_tokens, eta_ms, expected_tokens, final_speed, generation_percent
from webapp.web.events import job_event


@pytest.mark.parametrize(("piece", "tokens"), [("", 0), ("\n", 1), (" a", 1), (" conversation", 1),
                                                 (" the quick brown fox jumps", 5)])
def test_estimate_tokens_counts_merged_chunks_as_several(piece, tokens):
    assert estimate_tokens(piece) == tokens


def test_expected_tokens_prefers_num_predict_then_history_then_fallback():
    assert expected_tokens(128, [10, 20]) == (128, "num_predict")
    assert expected_tokens(-1, [100, 300, 200]) == (200, "history")
    assert expected_tokens(None, [0, None]) == (progress.FALLBACK_EXPECTED_TOKENS, "fallback")


def test_percent_never_goes_backwards_nor_reaches_100():
    assert generation_percent(50, 100) == 45.0
    assert generation_percent(10, 100, previous=45.0) == 45.0
    assert generation_percent(10_000, 100) < 100
    assert generation_percent(5, 0) == 0.0


def test_meter_count_never_passes_num_predict():
    meter = Meter(started=0.0, expected=10, limit=10)
    meter.add(8, 1.0)
    meter.add(5, 2.0)
    assert meter.tokens == 10


def test_meter_speed_excludes_the_model_load():
    meter = Meter(started=0.0, expected=100)
    meter.sample(10.0)           # ten seconds of loading, no token yet
    meter.add(1, 10.0)           # first token at t=10
    for second in range(1, 5):
        meter.add(20, 10.0 + second)
        fields = meter.sample(10.0 + second)
    assert fields["tokens_per_second"] == pytest.approx(81 / 4, rel=0.01)
    assert fields["elapsed_time"] == 14_000
    assert fields["current_tokens"] == 81


def test_meter_speed_is_a_recent_window():
    meter = Meter(started=0.0, expected=10_000)
    meter.add(1, 0.0)
    for second in range(1, 21):  # 10 tok/s for 20 s, then 40 tok/s
        meter.add(10 if second <= 10 else 40, float(second))
        fields = meter.sample(float(second))
    assert fields["tokens_per_second"] == pytest.approx(40, rel=0.05)


def test_eta_unknown_without_speed_or_past_the_estimate():
    assert eta_ms(10, 100, 0) is None
    assert eta_ms(120, 100, 5.0) is None
    assert eta_ms(50, 100, 10.0) == 5000


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
