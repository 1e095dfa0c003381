"""The learned estimates: prompt kinds, censored length spreads, conditional lengths, phases, ranges."""
import pytest

from webapp.estimates import (
    PAST_HISTORY,
    PRIOR_SPREAD,
    RANGE,
    Estimate,
    History,
    Run,
    batch_left,
    before_first_token_left,
    conditional_quantile,
    expected_length,
    generating_left,
    most_at_once,
    prompt_kind,
    quantile,
    queued_left,
    survival,
)


@pytest.mark.parametrize(("prompt", "hint"), [
    ("Answer in one word: is the sky blue?", "word"),
    ("Say it in one sentence please", "sentence"),
    ("Give me a list of 5 dog names", "list"),
    ("Write an essay about rivers", "long"),
    ("Explain quantum tunnelling in detail", "long"),
    ("Briefly, what is DNS?", "short"),
    ("Why is the sky blue?", "plain"),
])
def test_prompt_kind_reads_the_length_people_ask_for(prompt, hint):
    assert prompt_kind(prompt).split(":")[0] == hint


def test_prompt_kind_says_how_long_the_prompt_is_and_whether_a_system_prompt_shapes_it():
    assert prompt_kind("hi") == "plain:s:-"
    assert prompt_kind("word " * 100, system="Be terse") == "plain:m:s"
    assert prompt_kind("word " * 300) == "plain:l:-"


def test_survival_without_cut_runs_is_the_plain_share_longer():
    steps = survival([Run(n) for n in (10, 20, 30, 40)])
    assert steps == [(10, 0.75), (20, 0.5), (30, 0.25), (40, 0.0)]


def test_a_run_cut_at_num_predict_counts_as_at_least_that_long_not_as_an_end():
    # Two runs ended at 10 and 30; one was cut at 20 (it would have gone further).
    steps = survival([Run(10), Run(20, cut=True), Run(30)])
    assert steps == [(10, pytest.approx(2 / 3)), (30, 0.0)]
    # Taken as an end, the cut run would pull the median down to 20.
    assert conditional_quantile(steps, 0, 0.5) == 30
    assert conditional_quantile(survival([Run(10), Run(20), Run(30)]), 0, 0.5) == 20


def test_the_expected_length_is_conditional_on_what_has_been_generated():
    runs = [Run(n) for n in (10, 20, 30, 100, 200, 300)]
    assert expected_length(runs, "plain:s:-", 0, None).point == 65  # the median of six: halfway from 30 to 100
    later = expected_length(runs, "plain:s:-", 50, None)
    assert later.point == 200 and later.low == 100 and later.high == 300


def test_passing_every_earlier_run_moves_the_guess_instead_of_parking_it():
    runs = [Run(n) for n in (10, 20, 30)]
    first, second = (expected_length(runs, "plain:s:-", seen, None) for seen in (40, 80))
    assert 40 < first.point < second.point and second.point > 80


def test_num_predict_caps_the_expected_length_and_its_range():
    runs = [Run(n) for n in (100, 200, 300, 400)]
    length = expected_length(runs, "plain:s:-", 0, limit=150)
    assert length.point == length.high == 150 and length.low == 100


def test_no_history_means_no_estimate():
    assert expected_length([], "plain:s:-", 0, None) is None
    assert generating_left(History(), "plain:s:-", 10, None, 20.0) is None


def test_a_prompt_kind_with_enough_runs_of_its_own_is_learned_apart_from_the_model():
    runs = [Run(3, kind="word:s:-")] * 10 + [Run(300, kind="plain:s:-")] * 10
    assert expected_length(runs, "word:s:-", 0, None).point == 3
    assert expected_length(runs, "plain:s:-", 0, None).point == 300
    # A kind with too few runs falls back to its hint's runs, and without enough of those to the
    # model's: 13 of the 23 runs are longer than the list's own 50, so the model's median is 300.
    model = [Run(3, kind="word:s:-")] * 10 + [Run(300, kind="plain:s:-")] * 12
    assert expected_length(model + [Run(50, kind="list:s:-")], "list:s:-", 0, None).point == 300
    hinted = model + [Run(40, kind="list:s:-")] * 3
    assert expected_length(hinted, "list:m:-", 0, None).point == 40


def test_time_left_while_generating_is_the_rest_of_the_length_at_the_live_speed():
    history = History(runs=[Run(n) for n in (100, 200, 300, 400)], speeds=[50.0])
    left = generating_left(history, "plain:s:-", 100, None, speed=25.0)  # expects 300: 200 more
    assert left.point == 8000 and left.low <= left.point <= left.high
    assert generating_left(history, "plain:s:-", 100, None, speed=0.0).point == 4000  # learned speed


def test_time_left_before_the_first_token_adds_the_learned_load_and_prompt_time():
    history = History(runs=[Run(100)] * 5, speeds=[50.0], loads_cold=[3.0], loads_warm=[0.2],
                      prompt_rates=[0.001])
    cold = before_first_token_left(history, "plain:s:-", None, cold=True, prompt_tokens=1000, waited=1.0)
    assert cold.point == 2000 + 3000 + 1000 - 1000
    warm = before_first_token_left(history, "plain:s:-", None, cold=False, prompt_tokens=0, waited=0.0)
    assert warm.point == 2000 + 200
    late = before_first_token_left(history, "plain:s:-", None, cold=True, prompt_tokens=0, waited=60.0)
    assert late.point == 2000  # a load past its guess adds nothing more, and the answer is still ahead


def test_a_queued_job_waits_its_place_at_the_servers_pace_then_runs():
    history = History(runs=[Run(100)] * 5, speeds=[50.0], loads_warm=[0.0])
    run = before_first_token_left(history, "plain:s:-", None, cold=False, prompt_tokens=0, waited=0)
    left = queued_left(run, place=8, slots=4, per_slot=(3.0, 2.0, 5.0))
    assert left.point == 2 * 3000 + 2000 and left.low == 2 * 2000 + 2000 and left.high == 2 * 5000 + 2000


def test_the_range_holds_the_truth_about_as_often_as_it_claims():
    import random

    rng = random.Random(7)
    draw = lambda: Run(max(1, int(rng.lognormvariate(5, 0.5))))  # noqa: E731
    history, inside, trials = [draw() for _ in range(200)], 0, 2000
    for _ in range(trials):
        truth = draw().tokens
        length = expected_length(history, "plain:s:-", 0, None)
        inside += length.low <= truth <= length.high
    claimed = RANGE[1] - RANGE[0]
    assert abs(inside / trials - claimed) < 0.06


def test_where_the_share_left_sits_at_the_level_the_quantile_is_halfway_to_the_next_end():
    steps = survival([Run(n) for n in (10, 20, 30, 40)])
    assert conditional_quantile(steps, 0, 0.5) == 25  # a median of four, as statistics.median says
    assert conditional_quantile(steps, 15, 0.5) == 30  # three left: the middle one
    assert conditional_quantile(steps, 25, 0.5) == 35  # two left: halfway between them
    assert conditional_quantile(steps, 35, 0.5) == 40  # the last one
    assert conditional_quantile(steps, 45, 0.5) is None


def test_a_thin_tail_does_not_expect_the_run_to_end_at_the_next_length_history_saw():
    # At 51 tokens only one earlier run went further, to 57: this run is no more likely to stop
    # there than to go on, so the guess is at least what passing every run would give.
    runs = [Run(n) for n in (10, 20, 30, 40, 57)]
    length = expected_length(runs, "plain:s:-", 51, None)
    assert length.point == pytest.approx(51 * PAST_HISTORY[0.5] + 1)
    assert length.low == pytest.approx(51 * PAST_HISTORY[RANGE[0]] + 1)
    assert length.high == pytest.approx(51 * PAST_HISTORY[RANGE[1]] + 1)
    # Two runs past the count: halfway between them (the reference rule's median of two), not the
    # nearer one, which left "0.05 s" on a card with 1.5 s to go.
    assert expected_length(runs + [Run(300)], "plain:s:-", 51, None).point == (57 + 300) / 2


def test_a_tail_of_enough_runs_is_trusted_as_it_is():
    runs = [Run(n) for n in (10, 20, 52, 53, 54, 55)]
    length = expected_length(runs, "plain:s:-", 51, None)
    assert length.point == 53.5 and length.point < 51 * PAST_HISTORY[0.5]


def test_most_at_once_counts_the_spans_under_way_together():
    assert most_at_once([]) == 0
    assert most_at_once([(0, 2), (2, 4), (4, 6)]) == 1  # back to back: one slot
    assert most_at_once([(0, 4), (1, 5), (2, 6), (3, 7), (5, 9)]) == 4
    assert most_at_once([(0, 10), (1, 2), (3, 4)]) == 2


def test_quantile_interpolates():
    assert quantile([1, 2, 3, 4], 0.5) == 2.5 and quantile([], 0.5) is None and quantile([5], 0.9) == 5


def test_the_range_is_as_wide_as_the_models_estimates_have_been_off():
    import random

    rng = random.Random(3)
    steady = History(runs=[Run(100 + rng.randint(-2, 2)) for _ in range(60)], speeds=[50.0])
    wild = History(runs=[Run(max(1, int(rng.lognormvariate(5, 0.9)))) for _ in range(60)], speeds=[50.0])
    narrow, wide = (history.spread() for history in (steady, wild))
    assert narrow[0] <= 1.0 <= narrow[1] and wide[0] <= 1.0 <= wide[1]
    assert wide[1] / wide[0] > 3 * (narrow[1] / narrow[0])
    assert History(runs=[Run(10)] * 2).spread() == PRIOR_SPREAD  # too few runs to say


def test_a_runs_range_holds_about_as_often_as_it_claims_in_a_replay():
    import random

    rng = random.Random(11)
    draw = lambda: Run(max(2, int(rng.lognormvariate(5, 0.5))))  # noqa: E731
    history = History(runs=[draw() for _ in range(120)], speeds=[50.0])
    inside = trials = 0
    for _ in range(600):
        truth = draw().tokens
        seen = int(truth * rng.choice((0.25, 0.5, 0.75)))
        left = generating_left(history, "plain:s:-", seen, None, 50.0)
        trials += 1
        inside += left.low <= (truth - seen) / 50 * 1000 <= left.high
    # The spread is learned from 60 runs (180 replayed points), so it is itself a little off.
    assert abs(inside / trials - (RANGE[1] - RANGE[0])) < 0.15


def test_a_batch_waits_at_the_slots_serving_it_or_at_the_servers_while_none_is():
    item = (2.0, 1.0, 4.0)  # seconds per item: median, low, high
    assert batch_left(12, 3, item, server_slots=4) == Estimate(9000, 4500, 18000)  # 4 + 0.5 rounds
    assert batch_left(12, 0, item, server_slots=4) == Estimate(6000, 3000, 12000)  # 3 rounds
    assert batch_left(12, 0, item, server_slots=0) == Estimate(24000, 12000, 48000)  # at least one slot
