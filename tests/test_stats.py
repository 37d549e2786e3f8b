import pytest

from buxiban.eval.stats import bootstrap_ci, mcnemar_exact


def test_mcnemar_exact_hand_computed():
    a = [True] * 1 + [False] * 9 + [True] * 5 + [False] * 5  # 1 only-A, 9 only-B, 5 both right, 5 both wrong
    b = [False] * 1 + [True] * 9 + [True] * 5 + [False] * 5
    result = mcnemar_exact(a, b)
    assert (result.only_a, result.only_b) == (1, 9)
    # P(X <= 1) for Binomial(10, 1/2) = (1 + 10) / 1024; two-sided doubles it
    assert result.p_value == pytest.approx(22 / 1024)
    assert mcnemar_exact(b, a).p_value == pytest.approx(22 / 1024)  # symmetric
    # 3 vs 3 discordant: the smaller tail is P(X <= 3) = 42/64, doubled and capped at 1
    assert mcnemar_exact([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]).p_value == 1.0
    # 0 vs 5: 2 * (1/32)
    assert mcnemar_exact([0] * 5, [1] * 5).p_value == pytest.approx(2 / 32)
    assert mcnemar_exact([1, 0], [1, 0]).p_value == 1.0  # no discordant pair: no evidence of a difference
    with pytest.raises(ValueError):
        mcnemar_exact([1], [1, 0])


def test_bootstrap_ci_matches_the_normal_approximation_for_a_proportion():
    values = [1.0, 0.0] * 100  # p = 0.5, n = 200: standard error sqrt(0.25 / 200) = 0.0354, 95 % ≈ ±0.069
    interval = bootstrap_ci(values, resamples=2000, seed=1)
    assert interval.mean == 0.5
    assert interval.low == pytest.approx(0.5 - 1.96 * 0.0354, abs=0.012)
    assert interval.high == pytest.approx(0.5 + 1.96 * 0.0354, abs=0.012)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)  # seeded: the report is reproducible


def test_bootstrap_ci_of_constant_scores_has_no_width():
    interval = bootstrap_ci([0.75] * 20)
    assert (interval.mean, interval.low, interval.high) == (0.75, 0.75, 0.75)
    single = bootstrap_ci([1.0, 0.0, 0.0, 0.0])
    assert single.mean == 0.25 and 0.0 <= single.low <= 0.25 <= single.high <= 1.0


def test_wilson_interval_of_a_proportion_never_claims_certainty():
    from buxiban.eval.stats import wilson_interval

    none = wilson_interval([0.0] * 79)
    assert none.low == 0.0 and none.high == pytest.approx(1.959964**2 / (79 + 1.959964**2), abs=1e-6)  # 0.0464
    every = wilson_interval([1.0] * 79)
    assert every.high == 1.0 and every.low == pytest.approx(1 - none.high, abs=1e-9)
    half = wilson_interval([1.0] * 5 + [0.0] * 5)
    assert (round(half.low, 4), round(half.high, 4)) == (0.2366, 0.7634)  # the textbook value for 5 of 10


def test_exact_match_gets_wilson_and_graded_scores_the_bootstrap():
    from buxiban.eval.scoring import example_rows, summarize

    tests = [{"index": i, "where": f"t:{i}", "question": "q", "reference": "The answer is 42."} for i in range(20)]
    rows = example_rows(tests, {"base": ["The answer is 41."] * 20})
    summary, intervals = summarize(rows, ["base"])
    assert summary["base"]["exact_match"] == 0.0
    assert intervals["base"]["exact_match"]["high"] > 0.1  # 0 of 20 is not "certainly 0"
    f1 = intervals["base"]["token_f1"]
    assert f1["low"] == f1["high"] == summary["base"]["token_f1"]  # constant graded scores: no width
