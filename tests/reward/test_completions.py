import pytest

from mrgfast.reward import completion_text, normalize_completions


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("plain", "plain"),
        ("", ""),
        ("ünïcödé — 肺", "ünïcödé — 肺"),
        ([{"role": "assistant", "content": "hi"}], "hi"),
        ({"role": "assistant", "content": "one message"}, "one message"),
        ([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "ab"),
        ([{"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "t"}]}], "t"),
        ([{"content": "no role"}], "no role"),
        (
            [
                {"role": "assistant", "content": "a"},
                {"role": "tool", "content": "tool out"},
                {"role": "assistant", "content": "b"},
            ],
            "a\nb",
        ),
        ([{"role": "user", "content": "only user"}], "only user"),
        ([{"role": "assistant", "content": ["bare", " strings"]}], "bare strings"),
    ],
)
def test_completion_text(completion, expected):
    assert completion_text(completion) == expected


@pytest.mark.parametrize(
    "completion",
    [
        None,
        3,
        1.5,
        b"bytes",
        [],
        [None],
        ["not a message"],
        [{"role": "assistant"}],
        [{"role": "assistant", "content": None}],
        [{"role": "assistant", "content": [{"type": "text", "text": 5}]}],
        [{"role": "assistant", "content": [{"type": "image"}]}],
        [{"role": "assistant", "content": [7]}],
        {"role": "assistant", "content": {"nested": "dict"}},
    ],
)
def test_malformed_is_none(completion):
    assert completion_text(completion) is None


def test_normalize_reports_bad_indices():
    texts, bad = normalize_completions(["a", None, [{"content": "c"}], 4])
    assert texts == ["a", None, "c", None]
    assert bad == [1, 3]
    with pytest.raises(TypeError):
        normalize_completions("abc")
