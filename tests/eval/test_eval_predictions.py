"""The predictions file: resume reading, partial-line repair, errors naming file and line."""

import json

import pytest

from mrgfast.eval.predictions import (
    Prediction,
    PredictionsError,
    PredictionsWriter,
    check_against_studies,
    check_meta,
    load_existing,
    write_meta,
)


def _rec(i):
    return Prediction(f"s{i}", f"<think>t</think><report>r{i}</report>", f"r{i}", f"ref {i}")


def test_writer_appends_whole_batches_and_reader_returns_them(tmp_path):
    p = tmp_path / "predictions.jsonl"
    with PredictionsWriter(p) as w:
        w.write_batch([_rec(0), _rec(1)])
        # on disk before the writer is closed
        assert len(p.read_text().splitlines()) == 2
        w.write_batch([_rec(2)])
    got = load_existing(p)
    assert [r.id for r in got.records] == ["s0", "s1", "s2"]
    assert got.records[1] == _rec(1)
    assert got.truncated_bytes == 0
    line = json.loads(p.read_text().splitlines()[0])
    assert list(line) == ["id", "generated", "report", "reference"]


def test_partial_last_line_is_cut_off_and_append_continues_cleanly(tmp_path):
    p = tmp_path / "predictions.jsonl"
    with PredictionsWriter(p) as w:
        w.write_batch([_rec(0), _rec(1)])
    good = p.read_bytes()
    partial = _rec(2).to_json().encode()[:25]
    p.write_bytes(good + partial)
    got = load_existing(p)
    assert [r.id for r in got.records] == ["s0", "s1"]
    assert got.truncated_bytes == len(partial)
    assert p.read_bytes() == good  # repaired on disk
    with PredictionsWriter(p) as w:
        w.write_batch([_rec(2)])
    assert [r.id for r in load_existing(p).records] == ["s0", "s1", "s2"]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    p = tmp_path / "predictions.jsonl"
    p.write_text(_rec(0).to_json() + "\n" + _rec(1).to_json())
    got = load_existing(p)
    assert [r.id for r in got.records] == ["s0", "s1"]
    with PredictionsWriter(p) as w:
        w.write_batch([_rec(2)])
    assert [r.id for r in load_existing(p).records] == ["s0", "s1", "s2"]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", ":2: invalid JSON"),
        ('["a"]', ":2: expected a JSON object, got list"),
        ('{"id": "x", "generated": "g", "report": "r"}', ":2: field 'reference' is missing"),
        ('{"id": 3, "generated": "g", "report": "r", "reference": "f"}', ":2: field 'id' is int, not a string"),
        ('{"id": "s0", "generated": "g", "report": "r", "reference": "f"}', ":2: duplicate id 's0' (first on line 1)"),
    ],
)
def test_bad_lines_inside_the_file_stop_with_file_and_line(tmp_path, bad, message):
    p = tmp_path / "predictions.jsonl"
    p.write_text(_rec(0).to_json() + "\n" + bad + "\n" + _rec(1).to_json() + "\n")
    with pytest.raises(PredictionsError) as e:
        load_existing(p)
    assert str(p) + message in str(e.value)


def test_records_must_belong_to_the_split_with_the_same_reference(tmp_path):
    class S:
        def __init__(self, id, report):
            self.id, self.report = id, report

    recs = [_rec(0), _rec(1)]
    check_against_studies("P", recs, [S("s0", "ref 0"), S("s1", "ref 1"), S("s2", "ref 2")])
    with pytest.raises(PredictionsError, match="id 's1', which is not in the evaluated split"):
        check_against_studies("P", recs, [S("s0", "ref 0")])
    with pytest.raises(PredictionsError, match="reference that differs"):
        check_against_studies("P", recs, [S("s0", "ref 0"), S("s1", "changed")])


def test_meta_mismatch_lists_the_differences(tmp_path):
    p = tmp_path / "predictions.jsonl"
    assert check_meta(p, {"a": 1}, have_records=False) is None
    p.write_text(_rec(0).to_json() + "\n")
    assert "cannot be checked" in check_meta(p, {"a": 1}, have_records=True)
    write_meta(p, {"a": 1, "generation": {"max_new_tokens": 8}})
    assert check_meta(p, {"a": 1, "generation": {"max_new_tokens": 8}}, have_records=True) is None
    why = check_meta(p, {"a": 1, "generation": {"max_new_tokens": 16}}, have_records=True)
    assert "generation" in why and "8" in why and "16" in why


def test_surrogate_in_predictions_is_named_by_line(tmp_path):
    """A lone surrogate (a JSON escape) used to crash eval's metrics with UnicodeEncodeError (issue 10)."""
    from mrgfast.eval.predictions import PredictionsError, load_existing

    p = tmp_path / "predictions.jsonl"
    p.write_text(
        '{"id": "a", "generated": "g", "report": "g", "reference": "r"}\n'
        '{"id": "b", "generated": "g\\ud800", "report": "g", "reference": "r"}\n'
    )
    with pytest.raises(PredictionsError, match=r"predictions.jsonl:2: field 'generated' is not valid text"):
        load_existing(p)


def test_unterminated_string_message_reads_once(tmp_path):
    from mrgfast.eval.predictions import PredictionsError, load_existing

    p = tmp_path / "predictions.jsonl"
    p.write_text('{"id": "a", "generated": "g\n{"id": "b", "generated": "g", "report": "g", "reference": "r"}\n')
    with pytest.raises(PredictionsError) as e:
        load_existing(p)
    assert "at at" not in str(e.value) and "column" in str(e.value)
