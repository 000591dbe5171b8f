import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REF_A = "Mild cardiomegaly. No pleural effusion."
REF_B = "Right pleural effusion. No pneumothorax."
GOOD_A = "<think>the heart is wide, no fluid</think><report>Mild cardiomegaly. No pleural effusion.</report>"
GOOD_B = "<think>fluid on the right</think><report>Right pleural effusion. No pneumothorax.</report>"
WRONG_A = "<think>fluid</think><report>Right pleural effusion.</report>"
NOTAGS = "Mild cardiomegaly."
# the side switch (MCCS+): REF_B's effusion on the wrong side scores below GOOD_B under MCCS+, not under MCCS
LEFT_B = "<think>fluid on the left</think><report>Left pleural effusion. No pneumothorax.</report>"
UNSIDED_B = "<think>fluid</think><report>Pleural effusion. No pneumothorax.</report>"


def expected_scores(completions, references, **options):
    """mrgfast's own TRL-style reward on the same texts: what every framework path must reproduce."""
    from mrgfast.reward import MRGReward

    return MRGReward(**options)(completions=list(completions), report=list(references))


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """A Qwen-style tokenizer trained on the spot (no download), saved where verl can load it."""
    from mrgfast.models.tiny import train_tokenizer

    corpus = [REF_A, REF_B, GOOD_A, GOOD_B, WRONG_A, NOTAGS, "Describe the chest film.", "user", "assistant"] * 30
    tok = train_tokenizer(corpus, vocab_size=400)
    out = tmp_path_factory.mktemp("tokenizer")
    tok.save_pretrained(out)
    return out
