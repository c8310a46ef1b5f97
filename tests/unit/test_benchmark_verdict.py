"""The benchmark harness: both sides alternate who goes first, and a target is called met
only on the median over enough rounds, with the round-by-round spread shown."""

from benchmarks.common import MIN_ROUNDS, Samples, alternate, ratio_line


def _samples(label: str, seconds: list[float]) -> Samples:
    return Samples(label, seconds, [1024] * len(seconds))


def test_the_first_side_alternates_round_by_round() -> None:
    order: list[str] = []
    alternate(4, lambda: order.append("ours"), lambda: order.append("theirs"))
    assert order == ["ours", "theirs", "theirs", "ours", "ours", "theirs", "theirs", "ours"]


def test_too_few_rounds_are_not_judged_whatever_the_ratio() -> None:
    rounds = MIN_ROUNDS - 1
    line = ratio_line("x", _samples("a", [1.0] * rounds), _samples("b", [2.0] * rounds), 1.05)
    assert f"not judged: {rounds} rounds, at least {MIN_ROUNDS} needed" in line
    assert "meets" not in line


def test_the_verdict_is_the_median_not_the_best_round() -> None:
    ours = [1.0, 1.2, 1.2, 1.2, 1.2, 1.2, 1.2]   # one lucky round
    theirs = [1.1] * 7
    line = ratio_line("backup", _samples("a", ours), _samples("b", theirs), 1.05)
    assert "ratio 1.091 (target <= 1.05) MISSES" in line
    assert "round by round median 1.091, 0.909-1.091" in line
    met = ratio_line("backup", _samples("a", [1.0] * 7), _samples("b", theirs), 1.05)
    assert "ratio 0.909 (target <= 1.05) meets" in met
