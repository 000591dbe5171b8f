//! Tokeniser and sentence splitter. Works on bytes (every decision looks at ASCII bytes only, and
//! a UTF-8 continuation byte is never ASCII), so it never slices inside a code point, never
//! panics and is linear in the input.
//!
//! Output: the Aho-Corasick haystack, one `\x01TEXT\x02` per token (TEXT: a lowercased ASCII
//! word, `,`, `:`, `|` for a sentence break, `#` for a paragraph break), and the token list.

use super::rules::{Rules, NONE};

pub const WORD: u8 = 0;
pub const COMMA: u8 = 1;
pub const COLON: u8 = 2;
pub const BREAK: u8 = 3;
pub const PARA: u8 = 4;

#[derive(Clone, Copy, Debug)]
pub struct Tok {
    pub kind: u8,
    /// offset of the token's `\x01` in the haystack
    pub start: usize,
    /// vocabulary id of the token's text (`rules::NONE` when no phrase uses it)
    pub id: u32,
    /// length of the token's text
    pub len: u32,
}

const BULLET: &[u8] = "\u{2022}".as_bytes();

#[derive(Default)]
pub struct Tokens {
    pub hay: Vec<u8>,
    pub toks: Vec<Tok>,
}

impl Tokens {
    fn last_kind(&self) -> Option<u8> {
        self.toks.last().map(|t| t.kind)
    }

    /// The haystack character and vocabulary id of a punctuation token.
    fn punct(kind: u8, ids: [u32; 2]) -> (u8, u32) {
        match kind {
            COMMA => (b',', ids[0]),
            COLON => (b':', ids[1]),
            BREAK => (b'|', NONE),
            _ => (b'#', NONE),
        }
    }

    fn push_punct(&mut self, kind: u8, ids: [u32; 2]) {
        let (ch, id) = Self::punct(kind, ids);
        self.toks.push(Tok {
            kind,
            start: self.hay.len(),
            id,
            len: 1,
        });
        self.hay.extend_from_slice(&[0x01, ch, 0x02]);
    }

    fn replace_last(&mut self, kind: u8, ids: [u32; 2]) {
        let (ch, id) = Self::punct(kind, ids);
        if let Some(t) = self.toks.last_mut() {
            t.kind = kind;
            t.id = id;
            self.hay[t.start + 1] = ch;
        }
    }

    fn emit(&mut self, kind: u8, ids: [u32; 2]) {
        match kind {
            COMMA | COLON => {
                if matches!(self.last_kind(), Some(COMMA) | Some(COLON)) {
                    self.replace_last(kind, ids);
                } else {
                    self.push_punct(kind, ids);
                }
            }
            BREAK => {
                if !matches!(self.last_kind(), None | Some(BREAK) | Some(PARA)) {
                    self.push_punct(BREAK, ids);
                }
            }
            _ => match self.last_kind() {
                None | Some(PARA) => {}
                Some(BREAK) => self.replace_last(PARA, ids),
                _ => self.push_punct(PARA, ids),
            },
        }
    }

    /// The lowercased text of word token `t`.
    #[inline]
    pub fn word(&self, t: &Tok) -> &[u8] {
        &self.hay[t.start + 1..t.start + 1 + t.len as usize]
    }

    fn last_word(&self) -> &[u8] {
        match self.toks.last() {
            Some(t) if t.kind == WORD => self.word(t),
            _ => &[],
        }
    }
}

#[inline]
fn is_newline_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

/// Tokenise `text` into `out` (cleared first).
pub fn tokenize(text: &str, rules: &Rules, out: &mut Tokens) {
    out.hay.clear();
    out.toks.clear();
    let ids = [
        rules.vocab.get(&b","[..]).copied().unwrap_or(NONE),
        rules.vocab.get(&b":"[..]).copied().unwrap_or(NONE),
    ];
    let b = text.as_bytes();
    let n = b.len();
    let mut i = 0;
    while i < n {
        let ch = b[i];
        if ch.is_ascii_alphanumeric() {
            let mut j = i + 1;
            while j < n && b[j].is_ascii_alphanumeric() {
                j += 1;
            }
            let start = out.hay.len();
            out.hay.push(0x01);
            out.hay
                .extend(b[i..j].iter().map(|c| c.to_ascii_lowercase()));
            let id = rules
                .vocab
                .get(&out.hay[start + 1..])
                .copied()
                .unwrap_or(NONE);
            out.hay.push(0x02);
            out.toks.push(Tok {
                kind: WORD,
                start,
                id,
                len: (j - i) as u32,
            });
            i = j;
            continue;
        }
        let prev = if i > 0 { b[i - 1] } else { 0 };
        let next = if i + 1 < n { b[i + 1] } else { 0 };
        match ch {
            b'.' => {
                // a decimal point or an abbreviation's period does not end the sentence
                let decimal = prev.is_ascii_digit() && next.is_ascii_digit();
                let abbrev = prev.is_ascii_alphanumeric() && rules.is_abbrev(out.last_word());
                if !decimal && !abbrev {
                    out.emit(BREAK, ids);
                }
            }
            b'?' | b'!' | b';' => out.emit(BREAK, ids),
            b',' => out.emit(COMMA, ids),
            b':' if !(prev.is_ascii_digit() && next.is_ascii_digit()) => out.emit(COLON, ids),
            b':' => {} // a time such as 10:30
            b'\n' => {
                let mut j = i + 1;
                let mut newlines = 1;
                while j < n && is_newline_space(b[j]) {
                    if b[j] == b'\n' {
                        newlines += 1;
                    }
                    j += 1;
                }
                if newlines >= 2 {
                    out.emit(PARA, ids);
                } else if j < n {
                    let c = b[j];
                    let upper_word =
                        c.is_ascii_uppercase() && j + 1 < n && b[j + 1].is_ascii_lowercase();
                    if c == b'-'
                        || c == b'*'
                        || c.is_ascii_digit()
                        || upper_word
                        || b[j..].starts_with(BULLET)
                    {
                        out.emit(BREAK, ids);
                    }
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labeler::rules::rules;

    fn kinds(text: &str) -> String {
        let mut t = Tokens::default();
        tokenize(text, rules(), &mut t);
        t.toks
            .iter()
            .map(|k| match k.kind {
                WORD => 'w',
                COMMA => ',',
                COLON => ':',
                BREAK => '|',
                _ => '#',
            })
            .collect()
    }

    #[test]
    fn splits_sentences_not_decimals_or_abbreviations() {
        assert_eq!(kinds("A 1.5 cm nodule. No effusion."), "wwwww|ww|");
        assert_eq!(
            kinds("Discussed with Dr. Smith at 3:15 p.m. today."),
            "wwwwwwwwww|"
        );
        assert_eq!(kinds("Atelectasis vs. pneumonia"), "www");
        assert_eq!(kinds("e.g. consolidation"), "www");
    }

    #[test]
    fn lists_newlines_and_paragraphs() {
        assert_eq!(
            kinds("IMPRESSION:\n1. No pneumothorax\n2. Small effusion"),
            "w:|w|ww|w|ww"
        );
        assert_eq!(kinds("no effusion or\npneumothorax"), "wwww");
        assert_eq!(kinds("No pneumothorax\n\nMild atelectasis"), "ww#ww");
        assert_eq!(kinds("No pneumothorax\nMild atelectasis"), "ww|ww");
        assert_eq!(kinds("a\n- b\n\u{2022} c"), "w|w|w");
        assert_eq!(kinds("a , , ; : b"), "w,|:w");
    }

    #[test]
    fn lowercases_and_splits_on_anything_else() {
        let mut t = Tokens::default();
        tokenize("Air-Space ÉDEMA\u{0}x", rules(), &mut t);
        assert_eq!(
            t.hay,
            b"\x01air\x02\x01space\x02\x01dema\x02\x01x\x02".to_vec()
        );
    }
}
