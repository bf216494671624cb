"""Taskmaster loaders (real files where present, fixtures otherwise), turn rendering and bad input."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from perlhf.data import load_task, prompts_of
from perlhf.data.records import Dialogue, RatedResponse
from perlhf.data.taskmaster import (
    is_api_call,
    load_dialogue_files,
    load_reward_files,
    parse_api_call,
    render_api_call,
    render_turn,
)
from perlhf.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"
REWARD_SAMPLE = FIXTURES / "taskmaster_reward_sample.json"
DIALOGUE_SAMPLE = FIXTURES / "taskmaster_dialogue_sample.json"


# ----------------------------------------------------------------------------- rendering


def test_render_turn_text_api_and_response():
    assert render_turn({"role": "agent", "text": " Hi there \n"}) == {"role": "assistant", "content": "Hi there"}
    assert render_turn({"role": "user", "text": "a latte"}) == {"role": "user", "content": "a latte"}
    call = render_turn({"role": "agent", "api": {"get_menu_items": {"query": "espresso", "b": 1}}})
    assert call == {"role": "assistant", "content": 'API_CALL get_menu_items {"b":1,"query":"espresso"}'}
    resp = render_turn({"role": "api", "response": {"get_addons": "empty"}})
    assert resp == {"role": "user", "content": 'API_RESPONSE get_addons "empty"'}


def test_api_call_rendering_is_deterministic_and_parses_back():
    a = render_api_call("add_order_item", {"quantity": "1", "menu_item_id": "x-1"})
    b = render_api_call("add_order_item", {"menu_item_id": "x-1", "quantity": "1"})
    assert a == b == 'API_CALL add_order_item {"menu_item_id":"x-1","quantity":"1"}'
    assert parse_api_call(a) == ("add_order_item", {"menu_item_id": "x-1", "quantity": "1"})
    assert parse_api_call("  " + a + "\n") == ("add_order_item", {"menu_item_id": "x-1", "quantity": "1"})
    # the data has calls with an empty name; they round-trip too
    assert parse_api_call(render_api_call("", {})) == ("", {})
    # spaces after colons (a model's own formatting) still parse
    assert parse_api_call('API_CALL get_menu_items {"query": "mocha"}') == ("get_menu_items", {"query": "mocha"})


def test_is_api_call_counts_attempts_whether_or_not_they_parse():
    assert is_api_call('  API_CALL get_menu_items {"query":"mocha"}\n')
    assert is_api_call("API_CALL add_order_item menu_item_id=latte")  # a broken call is still an attempt
    assert not is_api_call("Sure, I will API_CALL get_menu_items for you.")
    assert not is_api_call("")


@pytest.mark.parametrize("text", [
    "Sure, one latte.",
    "API_CALL get_menu_items",
    'API_CALL get_menu_items {"query": "mocha"',
    'API_CALL get_menu_items ["mocha"]',
    'API_CALL get_menu_items {"query":"mocha"} and more',
    'API_RESPONSE get_menu_items {"a":1}',
])
def test_parse_api_call_rejects_non_calls(text):
    assert parse_api_call(text) is None


@pytest.mark.parametrize("turn, field", [
    ({"role": "robot", "text": "beep"}, "role"),
    ({"text": "no role"}, "role"),
    ({"role": "user"}, "text"),
    ({"role": "agent", "api": {"a": {}, "b": {}}}, "api"),
    ({"role": "api"}, "response"),
    ({"role": "user", "text": 5}, "text"),
])
def test_render_turn_rejects_malformed(turn, field):
    with pytest.raises(ValueError) as exc:
        render_turn(turn)
    assert exc.value.field == field


# ----------------------------------------------------------------------------- fixtures


def test_reward_fixture_records():
    recs = load_reward_files([REWARD_SAMPLE])
    assert len(recs) == 5
    assert all(isinstance(r, RatedResponse) for r in recs)
    assert [r.label for r in recs] == [1, 1, 0, 1, 0]
    assert recs[0].response == 'API_CALL get_menu_items {"query":"latte"}'
    assert recs[0].prompt[0] == {"role": "assistant", "content": "Hello! What would you like to order?"}
    assert recs[1].prompt[-1]["content"].startswith('API_RESPONSE get_menu_items {"items":')
    assert recs[1].prompt[-1]["role"] == "user"
    assert recs[3].prompt == ()  # an empty context list is kept (6 such records in the real Coffee data)
    assert {r.group for r in recs} == {"conv-a", "conv-b", "conv-c", "conv-d"}
    assert len({r.id for r in recs}) == 5


def test_dialogue_fixture_expands_api_traffic_like_the_reward_files():
    (d1, d2) = load_dialogue_files([DIALOGUE_SAMPLE])
    assert isinstance(d1, Dialogue) and d1.group == "dlg-sample-1"
    roles = [m["role"] for m in d1.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant",
                     "user", "assistant", "user", "assistant"]
    contents = [m["content"] for m in d1.messages]
    # same rendering as the reward file's context for the same call and response
    reward = load_reward_files([REWARD_SAMPLE])[1]
    assert contents[1] == reward.prompt[2]["content"] == 'API_CALL get_menu_items {"query":"latte"}'
    assert contents[2] == reward.prompt[3]["content"]
    assert contents[3] == "API_CALL show_menu {}"  # an api_call group without a request
    # the data's doubled quotes (""latte-1"") are repaired into valid JSON
    assert contents[7] == 'API_CALL add_order_item {"menu_item_id":"latte-1","quantity":"1"}'
    assert parse_api_call(contents[7]) is not None
    targets = d1.targets()
    assert targets[0] == (d1.messages[:1], contents[1])
    assert len(targets) == 5 and len(d2.targets()) == 1


# ----------------------------------------------------------------------------- real data


def test_real_taskmaster_coffee(shared_data_dir):
    t = load_task("taskmaster-coffee", shared_data_dir)
    assert t.kind == "rating" and len(t.files) == 7 and t.origin == "--data-dir"
    recs = t.all()
    assert len(recs) == 3228
    assert round(100 * sum(r.label for r in recs) / len(recs), 1) == 86.0
    assert sum(1 for r in recs if not r.prompt) == 6
    assert set(t.splits) == {"train", "validation", "test"}
    assert all(len(v) > 200 for v in t.splits.values())
    # every generated API call in the data parses back
    calls = [r.response for r in recs if r.response.startswith("API_CALL")]
    assert calls and all(parse_api_call(c) is not None for c in calls)


def test_real_taskmaster_ticketing(shared_data_dir):
    t = load_task("taskmaster-ticketing", shared_data_dir)
    recs = t.all()
    assert len(recs) == 3667 and len(t.files) == 8
    assert round(100 * sum(r.label for r in recs) / len(recs), 1) == 15.6
    assert max(len(r.prompt) for r in recs) == 86


def test_real_taskmaster_dialogues(shared_data_dir):
    t = load_task("taskmaster-coffee-dialogues", shared_data_dir)
    assert t.kind == "dialogue" and len(t) == 3710
    msgs = [m for d in t.all() for m in d.messages]
    calls = [m["content"] for m in msgs if m["content"].startswith("API_CALL")]
    assert len(calls) == 15395
    assert all(parse_api_call(c) is not None for c in calls)  # the 28 broken requests were repaired
    assert all(m["role"] == "assistant" for m in msgs if m["content"].startswith("API_CALL"))
    assert all(m["role"] == "user" for m in msgs if m["content"].startswith("API_RESPONSE"))
    prompts = prompts_of(t, "validation")
    keys = [tuple((m["role"], m["content"]) for m in p.prompt) for p in prompts]
    assert len(keys) == len(set(keys)) > 0


# ----------------------------------------------------------------------------- bad input


def _write(tmp_path: Path, records, name="reward_00.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(records) if not isinstance(records, str) else records)
    return p


def _good() -> dict:
    return json.loads(REWARD_SAMPLE.read_text())[1]


def _expect(path: Path, *fragments: str) -> DataError:
    with pytest.raises(DataError) as exc:
        load_reward_files([path])
    msg = str(exc.value)
    assert str(path) in msg
    for f in fragments:
        assert f in msg, msg
    return exc.value


def test_bad_invalid_json_file(tmp_path):
    p = _write(tmp_path, '[{"conversation_id": "x",\n "context": ]')
    _expect(p, "line 2", "invalid JSON")


def test_bad_not_an_array(tmp_path):
    _expect(_write(tmp_path, {"a": 1}), "expected a JSON array")


@pytest.mark.parametrize("field", ["conversation_id", "context", "generation", "reward"])
def test_bad_missing_field(tmp_path, field):
    rec = _good()
    del rec[field]
    _expect(_write(tmp_path, [_good(), rec]), "record 1", f"missing field '{field}'")


@pytest.mark.parametrize("reward", [0.5, 2, -1, "1", None])
def test_bad_reward_outside_0_1(tmp_path, reward):
    rec = _good()
    rec["reward"] = reward
    _expect(_write(tmp_path, [rec]), "record 0", "field 'reward'", "expected 0 or 1")


@pytest.mark.parametrize("context", ["", "   "])
def test_bad_empty_context(tmp_path, context):
    rec = _good()
    rec["context"] = context
    _expect(_write(tmp_path, [rec]), "record 0", "field 'context'", "empty context")


def test_bad_context_not_json(tmp_path):
    rec = _good()
    rec["context"] = "[{'role': 'user'}"
    _expect(_write(tmp_path, [rec]), "field 'context'", "not valid JSON")


def test_bad_unknown_role_in_context(tmp_path):
    rec = _good()
    ctx = json.loads(rec["context"])
    ctx[1]["role"] = "customer"
    rec["context"] = json.dumps(ctx)
    err = _expect(_write(tmp_path, [rec]), "record 0 (conversation_id 'conv-a')", "context[1].role", "unknown role")
    assert err.where.startswith("record 0")


def test_bad_generation_from_user(tmp_path):
    rec = _good()
    rec["generation"] = json.dumps({"role": "user", "text": "hi"})
    _expect(_write(tmp_path, [rec]), "field 'generation.role'", "expected an agent turn")


def test_bad_dialogue_unknown_speaker(tmp_path):
    data = json.loads(DIALOGUE_SAMPLE.read_text())
    data[1]["utterances"][1]["speaker"] = "barista"
    p = tmp_path / "data_00.json"
    p.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"record 1 .*utterances\[1\].*'speaker'.*unknown role 'barista'"):
        load_dialogue_files([p])


def test_bad_dialogue_unknown_annotation(tmp_path):
    data = json.loads(DIALOGUE_SAMPLE.read_text())
    data[0]["utterances"][0]["annotations"][0]["name"] = "api_cal"
    p = tmp_path / "data_00.json"
    p.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"unknown annotation 'api_cal'"):
        load_dialogue_files([p])


def test_bad_truncated_gz_via_task_path(tmp_path):
    # reward files are plain JSON; a truncated gzip of one still names the file
    raw = gzip.compress(REWARD_SAMPLE.read_bytes())
    p = tmp_path / "reward_00.json.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        load_reward_files([p])


def test_task_path_option_reads_a_folder(tmp_path):
    shutil.copy(REWARD_SAMPLE, tmp_path / "reward_00.json")
    t = load_task("taskmaster-coffee", path=tmp_path)
    assert len(t) == 5 and t.origin == "--path"
