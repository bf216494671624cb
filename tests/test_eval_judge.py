"""perlhf eval: win/tie/loss, the both-orders rule, API-call statistics, config errors."""

from __future__ import annotations

import pytest

from perlhf.data.records import Dialogue, RatedResponse
from perlhf.errors import UserError
from perlhf.eval.cli import EvalConfig
from perlhf.eval.judge import (
    LMJudge,
    api_call_stats,
    both_orders_verdict,
    known_api_names,
    score_answer_sets,
    verdict_rates,
    win_tie_loss,
)


def test_win_tie_loss_with_margin():
    a = [1.0, 0.5, 0.0, -1.0]
    b = [0.0, 0.45, 0.0, 0.0]
    assert win_tie_loss(a, b) == {"win": 0.5, "tie": 0.25, "loss": 0.25, "n": 4}
    assert win_tie_loss(a, b, tie_margin=0.1) == {"win": 0.25, "tie": 0.5, "loss": 0.25, "n": 4}
    assert win_tie_loss([], [])["n"] == 0
    with pytest.raises(ValueError):
        win_tie_loss([1.0], [])


def test_both_orders_rule():
    assert both_orders_verdict(True, True) == "win"
    assert both_orders_verdict(False, False) == "loss"
    assert both_orders_verdict(True, False) == "tie"  # split decision
    assert both_orders_verdict(False, True) == "tie"
    assert verdict_rates(["win", "tie", "tie", "loss"]) == {"win": 0.25, "tie": 0.5, "loss": 0.25, "n": 4}


def test_lm_judge_asks_both_orders(monkeypatch):
    """A judge that always prefers the first reply it is shown (position bias) gives only ties."""
    judge = LMJudge(model=None, tokenizer=None)  # type: ignore[arg-type]
    monkeypatch.setattr(LMJudge, "prefers_first", lambda self, ctx, first, second: True)
    assert judge.verdicts([[]] * 3, ["a"] * 3, ["b"] * 3) == ["tie"] * 3
    # a judge that prefers the longer reply, whatever the order
    monkeypatch.setattr(LMJudge, "prefers_first", lambda self, ctx, first, second: len(first) > len(second))
    assert judge.verdicts([[]] * 2, ["long answer", "x"], ["short", "longer"]) == ["win", "loss"]


def test_api_call_stats_and_known_names():
    dialogue = Dialogue("d", "g", (
        {"role": "user", "content": "a latte please"},
        {"role": "assistant", "content": 'API_CALL get_menu_items {"query":"latte"}'},
        {"role": "user", "content": 'API_RESPONSE get_menu_items {"items":[]}'},
        {"role": "assistant", "content": "Sorry, no latte."},
    ))
    rated = RatedResponse("r", "g", ({"role": "user", "content": "hi"},),
                          'API_CALL place_order {"item":"tea"}', 1)
    known = known_api_names([dialogue, rated])
    assert known == {"get_menu_items", "place_order"}
    answers = ['API_CALL get_menu_items {"query":"mocha"}', "API_CALL get_menu_items {broken",
               'API_CALL order_pizza {"x":1}', "Sure, anything else?"]
    s = api_call_stats(answers, known)
    assert s["api_calls"] == 3 and s["api_call_share"] == 0.75
    assert s["parse_rate"] == pytest.approx(2 / 3)
    assert s["known_api_rate"] == pytest.approx(1 / 3)
    assert api_call_stats(["hello"], known)["parse_rate"] is None


def test_eval_config_needs_policies_and_a_judge():
    with pytest.raises(UserError, match="--sft and --rl"):
        EvalConfig(rl="x").validate()
    with pytest.raises(UserError, match="give a judge"):
        EvalConfig(sft="a", rl="b").validate()
    EvalConfig(sft="a", rl="b", judge_rm="j").validate()


def test_seeds_win_rate_clusters_the_error_by_prompt():
    from perlhf.eval.judge import seeds_win_rate, win_rate

    rl, sft = [1.0, 0.0, 2.0, 2.0], [0.0, 1.0, 2.0, 1.0]  # win, loss, tie, win
    assert seeds_win_rate([(rl, sft)]) == pytest.approx(win_rate(win_tie_loss(rl, sft)))
    # the same verdicts twice: same rate and SE (not an SE shrunk by sqrt(2), as 8 independent verdicts would give)
    assert seeds_win_rate([(rl, sft), (rl, sft)]) == pytest.approx(win_rate(win_tie_loss(rl, sft)))
    # two runs that disagree on every prompt: each prompt scores 0.5, no spread left
    assert seeds_win_rate([([1.0, 0.0], [0.0, 1.0]), ([0.0, 1.0], [1.0, 0.0])]) == (0.5, 0.0)
    rate, se = seeds_win_rate([([1.0, 1.0], [0.0, 0.0]), ([1.0, 0.0], [0.0, 1.0])])  # prompts 1.0 and 0.5
    assert rate == 0.75 and se == pytest.approx(0.25 / 2**0.5)  # var 0.0625 over 2 prompts
    assert seeds_win_rate([([1.0], [0.5])], tie_margin=1.0) == (0.5, 0.0)
    with pytest.raises(ValueError, match="different numbers"):
        seeds_win_rate([([1.0], [0.0]), ([1.0, 2.0], [0.0, 0.0])])
    with pytest.raises(ValueError):
        seeds_win_rate([])


def test_win_rate_counts_ties_half_with_a_standard_error():
    from perlhf.eval.judge import win_rate

    rate, se = win_rate({"win": 0.5, "tie": 0.5, "loss": 0.0, "n": 100})
    assert rate == pytest.approx(0.75)
    assert se == pytest.approx((0.625 - 0.75 ** 2) ** 0.5 / 10)  # E[s^2] = 0.5 + 0.25 * 0.5
    assert win_rate({"win": 1.0, "tie": 0.0, "loss": 0.0, "n": 10}) == (1.0, 0.0)


def _info(fp, task="t", shard="1/2", auc=0.85, se=0.02, n=256):
    return {"base_fingerprint": fp, "task": task,
            "extra": {"train_shard": shard, "test": {"auc": auc, "auc_se": se, "n": n}}}


def test_judge_independence_flags_shared_weights_data_and_weak_judges():
    from perlhf.eval.judge import judge_independence

    ok = judge_independence(_info("a"), _info("b", shard="2/2"))
    assert ok["shares_backbone"] is False and ok["shares_data"] is False and ok["too_weak"] is False
    assert judge_independence(_info("a"), _info("a", shard="2/2"))["shares_backbone"] is True
    assert judge_independence(_info("a"), _info("b", shard="1/2"))["shares_data"] is True
    assert judge_independence(_info("a", shard="all"), _info("b", shard="2/2"))["shares_data"] is True
    assert judge_independence(_info("a"), _info("b", task="other", shard="1/2"))["shares_data"] is False
    assert judge_independence(_info("a"), _info("b", shard="2/2", auc=0.53, se=0.02))["too_weak"] is True
    weak_acc = {"base_fingerprint": "b", "extra": {"test": {"accuracy": 0.55, "n": 64}}}
    assert judge_independence(None, weak_acc)["too_weak"] is True  # 0.05 < 2 * sqrt(.2475/64) = 0.124
    assert judge_independence(None, {"base_fingerprint": "b"})["too_weak"] is True  # unknown strength


def test_reused_sft_answers_check_settings_prompts_and_file(tmp_path):
    """`--sft-answers-from`: an earlier eval's SFT answers are reused only for the same settings and prompts,
    and every refusal names the file at fault."""
    import json

    from perlhf.eval.judge import SFT_ANSWER_KEYS, reused_sft_answers

    settings = {k: k for k in SFT_ANSWER_KEYS}
    samples = tmp_path / "answers.jsonl"
    samples.write_text("".join(json.dumps({"id": i, "sft": f"answer {i}", "rl": "x"}) + "\n" for i in ("a", "b")))
    report = tmp_path / "eval.json"
    report.write_text(json.dumps({**settings, "samples_out": str(samples)}))
    assert reused_sft_answers(report, settings, ["a", "b"]) == (["answer a", "answer b"], str(samples))
    with pytest.raises(UserError, match=r"eval\.json.*seed 'seed' there, 1 here"):
        reused_sft_answers(report, {**settings, "seed": 1}, ["a", "b"])
    with pytest.raises(UserError, match=r"answers\.jsonl.*other prompts"):
        reused_sft_answers(report, settings, ["b", "a"])  # the same prompts in another order
    report.write_text(json.dumps(settings))
    with pytest.raises(UserError, match="without --samples-out"):
        reused_sft_answers(report, settings, ["a", "b"])
    report.write_text(json.dumps({**settings, "samples_out": str(tmp_path / "gone.jsonl")}))
    with pytest.raises(UserError, match=r"gone\.jsonl cannot be read"):
        reused_sft_answers(report, settings, ["a", "b"])
    samples.write_text('{"id": "a", "sft": "fine"}\nnot json\n')
    report.write_text(json.dumps({**settings, "samples_out": str(samples)}))
    with pytest.raises(UserError, match=r"answers\.jsonl line 2"):
        reused_sft_answers(report, settings, ["a", "b"])
    with pytest.raises(UserError, match=r"missing\.json: cannot read"):
        reused_sft_answers(tmp_path / "missing.json", settings, ["a"])


def test_eval_subset_is_fixed_ordered_and_nested():
    """`perlhf eval --num-prompts n` judges a fixed subset in data order; one seed gives one permutation, so a
    larger n holds every prompt of a smaller one (what benchmarks/coffee_eval_split.py relies on)."""
    from perlhf.eval.judge import eval_subset

    prompts = list(range(50))
    small, large = eval_subset(prompts, 10, 0), eval_subset(prompts, 30, 0)
    assert small == sorted(small) and len(set(small)) == 10
    assert small == eval_subset(prompts, 10, 0)
    assert set(small) <= set(large)
    assert eval_subset(prompts, 10, 1) != small
    assert eval_subset(prompts, 50, 0) == prompts and eval_subset(prompts, 999, 3) == prompts


def test_identical_answers_are_scored_once_and_tie_exactly():
    seen = []

    def score(items):  # a scorer whose result depends on the batch, as padding does
        seen.append(list(items))
        return [len(a) + 1e-7 * k for k, (_, a) in enumerate(items)]

    contexts = [["c0"], ["c1"], ["c2"]]
    rl, sft = score_answer_sets(score, contexts, [["same", "a", "x"], ["same", "bb", "x"]])
    assert len(seen) == 1 and [a for _, a in seen[0]] == ["same", "a", "x", "bb"]  # one call, each pair once
    assert rl[0] == sft[0] and rl[2] == sft[2] and rl[1] < sft[1]
    assert win_tie_loss(rl, sft) == {"win": 0.0, "tie": 2 / 3, "loss": 1 / 3, "n": 3}
    # the same answer to another context is another item
    a, b = score_answer_sets(lambda items: [float(k) for k in range(len(items))], contexts[:2],
                             [["same", "same"], ["same", "same"]])
    assert a == b == [0.0, 1.0]
    assert score_answer_sets(score, [], [[], []]) == [[], []]
