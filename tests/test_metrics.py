import pytest

from buxiban.eval.metrics import chrf, field_match, longest_common_subsequence, rouge_l, score_answer
from buxiban.eval.refusal import is_refusal


def share(prediction: str, reference: str) -> float:
    return score_answer(prediction, reference)["field_match"]


def test_field_match_counts_each_reference_field():
    reference = '{"team": "repairs", "priority": "urgent"}'
    assert field_match('{"priority": "urgent", "team": "repairs"}', reference) == {"team": True, "priority": True}
    assert field_match('{"team": "repairs", "priority": "normal"}', reference) == {"team": True, "priority": False}
    assert share('{"team": "repairs", "priority": "normal", "extra": 1}', reference) == 0.5
    assert share('{"team": "billing"}', reference) == 0.0
    assert share("team: repairs", reference) == 0.0  # not JSON: no field matched
    assert share('["repairs"]', reference) == 0.0
    assert field_match("repairs", "The City plan costs NT$690 per month.") is None  # free text: no fields
    assert field_match("{}", "[1, 2]") is None


def test_rouge_l_is_the_lcs_f1_of_tokens():
    assert longest_common_subsequence("a b c d e".split(), "a c e x".split()) == 3
    # tokens: the city plan costs 690 / the plan costs nt 690 per month; LCS "the plan costs 690" = 4
    # P = 4/5, R = 4/7, F1 = 2PR/(P+R) = 2/3
    assert rouge_l("The city plan costs 690", "The plan costs NT$690 per month.") == pytest.approx(2 / 3)
    assert rouge_l("plan per costs month", "plan costs per month") == pytest.approx(0.75)  # LCS 3 of 4 each side
    assert rouge_l("month per costs plan", "plan costs per month") == pytest.approx(0.25)  # reversed: LCS 1
    assert rouge_l("", "") == 1.0 and rouge_l("", "x") == 0.0
    # Chinese counts per character: 每天營業 vs 我們每天營業 → LCS 4, P = 1, R = 4/6
    assert rouge_l("每天營業", "我們每天營業") == pytest.approx(2 * (4 / 6) / (1 + 4 / 6))


def test_chrf_equals_sacrebleu_on_its_documented_example():
    # sacrebleu's CHRF() (char order 6, beta 2) scores this pair 61.576379378113785
    assert chrf(
        "The relationship between Obama and Netanyahu is not exactly friendly.",
        "The ties between Obama and Netanyahu are not particularly friendly.",
    ) == pytest.approx(0.61576379378)


def test_chrf_hand_computed():
    # "ab" vs "abc": 1-grams P=2/2 R=2/3; 2-grams P=1/1 R=1/2; higher orders exist only in the reference
    # and do not count. Averages P=1, R=7/12; F2 = 5PR/(4P+R) = (35/12)/(55/12) = 7/11
    assert chrf("ab", "abc") == pytest.approx(7 / 11)
    assert chrf("a b", "ab") == 1.0  # whitespace is removed before counting
    assert chrf("AB", "ab") == 0.0  # case is kept, as in sacrebleu's default
    assert chrf("", "") == 1.0 and chrf("", "abc") == 0.0


def test_score_answer_adds_field_scores_only_for_json_references():
    text = score_answer("The deposit is NT$3,000.", "The deposit is NT$3,000.")
    assert text == {"exact_match": True, "token_f1": 1.0, "rouge_l": 1.0, "chrf": 1.0}
    routed = score_answer('{"team": "billing", "priority": "urgent"}', '{"team": "repairs", "priority": "urgent"}')
    assert routed["exact_match"] is False and routed["field_match"] == 0.5
    assert routed["fields"] == {"team": False, "priority": True}


@pytest.mark.parametrize(
    "answer",
    [
        "I'm sorry, but I can't help with that.",
        "I cannot share other customers' data.",
        "I can\u2019t discuss that.",
        "Sorry, but that is not something I can answer.",
        "I am unable to give legal advice.",
        "As an AI, I have no opinion.",
        "I must decline to compare us with competitors.",
        "抱歉,我無法回答這個問題。",
        "I won't speculate about that.",
    ],
)
def test_refusals_are_detected(answer):
    assert is_refusal(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "The City plan costs NT$690 per month.",
        "You cannot cancel during the first month.",
        "Yes, the deposit is refunded within 7 days.",
        '{"team": "repairs", "priority": "urgent"}',
        "",
        "Icannot is not a word.",
        # a decline after the opening is not counted: the answer came first
        "The Commuter plan costs NT$1,190 per month and includes battery swaps at every station in the city, "
        "helmet rental, theft insurance, and priority repairs within one working day; I can't think of more.",
    ],
)
def test_answers_are_not_refusals(answer):
    assert not is_refusal(answer)
