"""The job format module: what parses as a job, the one JSON encoder, the milliseconds rule."""

import json
import math

import pytest

from forkq import payload
from forkq.errors import MalformedJobError, UnknownJobError

GOOD = '{"class":"app.Report","args":[1],"jid":"a","queue":"default"}'
#: a chain's step as ``flow/chain.py`` writes it
STEP = '{"job":{"class":"B","args":[],"jid":"j","queue":"q"},"pass":true}'


@pytest.mark.parametrize("text, reason", [
    (b'{"class":"A","args":["\xff"]}', "payload is not UTF-8 text (byte 22: invalid start byte)"),
    ("", "payload is not valid JSON (Expecting value: line 1 column 1 (char 0))"),
    ('{"class":"A","args":[]', "payload is not valid JSON (Expecting ',' delimiter"),
    ("[" * 100_000 + "]" * 100_000, "payload nests JSON deeper than the JSON reader allows"),
    ('{"class":"A","args":[' + "9" * 5000 + "]}", "payload is not valid JSON (Exceeds the limit"),
    # (text that is not one bare JSON value goes to ``json.loads``, which says why)
    ('\ufeff{"class":"A","args":[]}', "payload is not valid JSON (Unexpected UTF-8 BOM"),
    ('{"class":"A","args":[]} x', "payload is not valid JSON (Extra data: line 1 column 25"),
    ('{"class":"A","args":[]}{}', "payload is not valid JSON (Extra data: line 1 column 24"),
    ("[1]", "payload is a JSON list, not an object"),
    ('"job"', "payload is a JSON string, not an object"),
    ("3", "payload is a JSON int, not an object"),
    ("null", "payload is a JSON null, not an object"),
    ('{"args":[]}', "payload has no 'class' string naming the job"),
    ('{"class":7,"args":[]}', "payload's 'class' is int, not a job name"),
    ('{"class":"","args":[]}', "payload's 'class' is an empty string, not a job name"),
    ('{"class":["A"],"args":[]}', "payload's 'class' is list, not a job name"),
    ('{"class":"A"}', "payload's 'args' is null, not a list"),
    ('{"class":"A","args":{"x":1}}', "payload's 'args' is dict, not a list"),
    ('{"class":"A","args":[],"jid":5}', "payload's 'jid' is int, not a string"),
    ('{"class":"A","args":[],"queue":true}', "payload's 'queue' is boolean, not a queue name"),
    ('{"class":"A","args":[],"queue":""}', "payload's 'queue' is an empty string, not a queue name"),
    # a workflow's fields, acted on at the job's end: refused before it runs
    ('{"class":"A","args":[],"bid":["b"]}', "payload's 'bid' is list, not a batch id"),
    ('{"class":"A","args":[],"chord_index":"1"}', "payload's 'chord_index' is '1', not a position"),
    ('{"class":"A","args":[],"chord_index":-1}', "payload's 'chord_index' is -1, not a position"),
    ('{"class":"A","args":[],"chord_index":true}', "payload's 'chord_index' is True, not a"),
    ('{"class":"A","args":[],"chain":"B"}', "payload's 'chain' is string, not a list of steps"),
    ('{"class":"A","args":[],"chain":{"job":{}}}', "payload's 'chain' is dict, not a list"),
    ('{"class":"A","args":[],"chain":[' + STEP + ',[1,2]]}', "payload's 'chain' step 2 is not a"),
    ('{"class":"A","args":[],"chain":[{"job":{"class":"B","args":[],"jid":"j"}}]}',
     "payload's 'chain' step 1 is not a step"),
    ('{"class":"A","args":[],"chain":[{"job":{"class":"B","args":{},"jid":"j","queue":"q"}}]}',
     "payload's 'chain' step 1 is not a step"),
])
def test_parse_names_what_is_wrong_with_a_malformed_payload(text, reason):
    with pytest.raises(MalformedJobError) as caught:
        payload.parse(text)
    assert str(caught.value).startswith(reason)


@pytest.mark.parametrize("text", [
    GOOD, GOOD.encode(), '{"class":"A","args":[]}', '{"class":"A","args":[],"jid":null}',
    '{"class":"A","args":[],"retry":"yes","backtrace":"lots"}',  # read leniently on failure
    '{"class":"A","args":[],"enqueued_at":NaN,"retry":1e400}',
    ' {"class":"A","args":[]}', '{"class":"A","args":[]}\n',  # white space around one value
    '{"class":"A","args":[],"bid":"b1","chord_index":0,"chain":[' + STEP + "," + STEP + "]}",
    '{"class":"A","args":[],"chain":[]}',
])
def test_parse_takes_every_runnable_payload(text):
    parsed = payload.parse(text)
    assert parsed["class"] in ("app.Report", "A") and isinstance(parsed["args"], list)


class Nested:
    class Error(Exception):
        pass


@pytest.mark.parametrize("exc, name", [
    (ValueError("x"), "ValueError"),
    (KeyError("x"), "KeyError"),
    (UnknownJobError(), "forkq.errors.UnknownJobError"),
    (Nested.Error(), f"{__name__}.Nested.Error"),
])
def test_error_class_name_is_bare_for_builtins_only(exc, name):
    assert payload.error_class_name(exc) == name


@pytest.mark.parametrize("value, text", [
    ({"class": "A", "args": [1, "ü", None]}, '{"class":"A","args":[1,"ü",null]}'),
    ([1.5, True, {"k": []}], '[1.5,true,{"k":[]}]'),
    ({"b": 1, "a": 2}, '{"b":1,"a":2}'),  # key order kept, as Sidekiq keeps it
    ({"retry": math.inf, "at": math.nan}, '{"retry":Infinity,"at":NaN}'),  # written back as read
])
def test_dumps_writes_compact_utf8_json(value, text):
    assert payload.dumps(value) == text


def test_dumps_refuses_what_json_has_no_form_for():
    with pytest.raises(TypeError):
        payload.dumps({"args": [{1, 2}]})


def test_a_payload_read_back_is_written_back_unchanged():
    text = '{"class":"A","args":["ü",1e400],"jid":"j","created_at":1764300000.25}'
    parsed = payload.parse(text)
    assert json.loads(payload.dumps(parsed)) == json.loads(text)


@pytest.mark.parametrize("value, seconds", [
    (1764300000.25, 1764300000.25),
    (1764300000, 1764300000.0),
    (1764300000250, 1764300000.25),     # Sidekiq 8: integer milliseconds
    (payload.MS_THRESHOLD, 1e11),       # the threshold itself is still seconds
    (0, 0.0),
    (-5, -5.0),
    (10 ** 400, None),                  # too large for a float
    (math.nan, None), (math.inf, None), (-math.inf, None),
    ("1764300000", None), (True, None), (None, None), ([1], None),
])
def test_epoch_seconds_reads_milliseconds_past_the_threshold(value, seconds):
    assert payload.epoch_seconds(value) == seconds
