import pytest

from mrgfast.reward import FormatReward, extract_report, format_reward, format_score


@pytest.mark.parametrize(
    "text",
    [
        "<think>heart is wide</think><report>Cardiomegaly.</report>",
        "  \n<think>a</think>\n\n<report>b</report>\n ",
        "<think>x\ny</think> <report>multi\nline report</report>",
    ],
)
def test_format_one(text):
    assert format_score(text) == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Cardiomegaly.",
        "<report>b</report>",
        "<think>a</think>",
        "<think></think><report>b</report>",  # empty think
        "<think>a</think><report>  </report>",  # empty report
        "<think>a</think>junk<report>b</report>",  # text between blocks
        "<think>a</think><report>b</report> trailing",
        "leading <think>a</think><report>b</report>",
        "<think>a</think><report>b</report><report>c</report>",  # two reports
        "<think>a<think>b</think><report>c</report>",  # nested think
        "<report>b</report><think>a</think>",  # wrong order
        "<think>a</think><report>b</think></report>",
        "<THINK>a</THINK><REPORT>b</REPORT>",
    ],
)
def test_format_zero(text):
    assert format_score(text) == 0.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>t</think><report> No effusion. </report>", "No effusion."),
        ("<think>t</think> The lungs are clear.", "The lungs are clear."),
        ("<think>a</think>b</think> final words", "final words"),  # after the LAST </think>
        ("<think>t</think><report>cut at the length li", "cut at the length li"),
        ("plain report, no tags", "plain report, no tags"),
        ("<report>unclosed and no think", "unclosed and no think"),
        ("pre <report>inside</report> post", "inside"),
        ("", ""),
    ],
)
def test_extract_report(text, expected):
    assert extract_report(text) == expected


def test_format_reward_trl_signature_and_malformed_counting():
    logged = []
    completions = [
        "<think>a</think><report>b</report>",
        None,
        [{"role": "assistant", "content": "<think>a</think><report>b</report>"}],
        [
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "<think>a</think>"},
                    {"type": "text", "text": "<report>b</report>"},
                ],
            }
        ],
        [{"role": "assistant"}],  # no content: malformed
        42,
    ]
    fr = FormatReward(name="fmt")
    out = fr(
        prompts=["p"] * 6,
        completions=completions,
        completion_ids=None,
        log_metric=lambda k, v: logged.append((k, v)),
        trainer_state=None,
        log_extra=lambda *a: None,
    )
    assert out == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    assert logged == [("fmt/malformed", 3.0)]
    assert fr.malformed_total == 3 and fr.completions_total == 6
    assert fr.__name__ == "fmt"
    assert format_reward(prompts=["p"], completions=["<think>a</think><report>b</report>"]) == [1.0]
    assert format_reward.__name__ == "format_reward"


def test_format_reward_length_mismatch_raises():
    with pytest.raises(ValueError, match="prompts has 2 items but there are 1 completions"):
        format_reward(prompts=["a", "b"], completions=["x"])
    with pytest.raises(TypeError, match="completions"):
        format_reward(prompts=["a"], completions="a string")


from hypothesis import given, settings
from hypothesis import strategies as st

from mrgfast.reward.format import parse_completion

PIECES = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<report>",
        "</report>",
        " ",
        "\n",
        "a",
        "No effusion.",
        "<",
        "x < 1 cm",
        "<thin",
        "</report",
        ">",
        "",
    ]
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(PIECES, max_size=12).map("".join))
def test_parse_completion_equals_the_two_functions(text):
    assert parse_completion(text) == (extract_report(text), format_score(text))


@pytest.mark.parametrize(
    "text",
    [
        "<think>a</think><report>b</report>",
        " <think> a </think>\\n<report> b </report> ",
        "<think> </think><report>b</report>",
        "<think>a</think> x <report>b</report>",
        "y<think>a</think><report>b</report>",
        "<think>a</think><report> </report>",
        "no tags at all",
        "<think>a</think><report>b</report>z",
        "<think>x < 2</think><report>b</report>",
    ],
)
def test_parse_completion_examples(text):
    assert parse_completion(text) == (extract_report(text), format_score(text))
