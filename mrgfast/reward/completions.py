"""Normalising what reward frameworks hand over as a "completion" into plain text.

TRL passes completions either as strings (standard datasets) or as chat messages
(conversational datasets): a list of ``{"role": "assistant", "content": ...}`` dicts whose content
is a string or a list of parts such as ``{"type": "text", "text": "..."}``. This module turns each
into one string, or ``None`` when the completion is malformed (``None`` itself, a number, a
message without text content, a text part whose text is not a string, text that is not valid
Unicode such as a lone surrogate, which no labeler or tokenizer can encode...). Callers score a
malformed completion 0.0 and count it; they never crash a training run over one bad sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def completion_text(completion: Any) -> str | None:
    """The text of one completion, or ``None`` when it is malformed.

    Accepted forms:

    * a string (returned as is);
    * one message dict with a ``content`` key;
    * a list/tuple of message dicts (TRL's conversational completions). The text of the
      assistant messages is joined with newlines; messages without a role count as assistant
      messages; when no message is an assistant message, all of them are used.

    A message's content is a string, or a list of parts: ``{"type": "text", "text": str}`` parts
    (and bare strings) contribute their text; parts of other types (images, tool calls) are
    skipped. A message whose content yields no text at all is malformed, and so is text that cannot
    be encoded as UTF-8 (a lone surrogate such as ``"a\ud800b"``).
    """
    if isinstance(completion, str):
        return _encodable(completion)
    if isinstance(completion, dict):
        return _encodable(_message_text(completion))
    if isinstance(completion, (list, tuple)):
        if not completion:
            return None
        if not all(isinstance(m, dict) for m in completion):
            return None
        chosen = [m for m in completion if m.get("role", "assistant") == "assistant"] or list(completion)
        texts = []
        for m in chosen:
            t = _message_text(m)
            if t is None:
                return None
            texts.append(t)
        return _encodable("\n".join(texts))
    return None


def _encodable(text: str | None) -> str | None:
    """`text` when it is valid Unicode (encodable as UTF-8), else None (malformed)."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text


def _message_text(message: dict) -> str | None:
    if "content" not in message:
        return None
    content = message["content"]
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                if part.get("type", "text") == "text" and "text" in part:
                    if not isinstance(part["text"], str):
                        return None
                    texts.append(part["text"])
                # other part types (image, tool_call, ...) carry no report text
            else:
                return None
        if not texts:
            return None
        return "".join(texts)
    return None


def normalize_completions(completions: Sequence[Any]) -> tuple[list[str | None], list[int]]:
    """Texts of all completions (``None`` for malformed ones) and the indices of the malformed."""
    if isinstance(completions, (str, bytes)) or completions is None:
        raise TypeError(
            "completions must be a sequence of completions (strings or chat messages), "
            f"got {type(completions).__name__}"
        )
    texts = [completion_text(c) for c in completions]
    bad = [i for i, t in enumerate(texts) if t is None]
    return texts, bad
