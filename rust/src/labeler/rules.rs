//! The rule file (`mrgfast/reference/rules.txt`, shared with the Python reference) parsed into
//! entries and a token trie. See the file's header for its format.
//!
//! This module uses only `std` and `crate::observations`: `build.rs` includes it too and parses
//! the file at build time, so a bad rule line fails `cargo build` (file and line) and the parse
//! at run time, over the same compiled-in bytes, cannot fail.

use crate::observations::OBSERVATIONS;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The rule text, compiled in. The Python reference reads the same file from the package.
pub const RULES_TEXT: &str = include_str!("../../../mrgfast/reference/rules.txt");

// trigger role bits
pub const NEG_PRE: u16 = 1;
pub const NEG_POST: u16 = 2;
pub const UNC_PRE: u16 = 4;
pub const UNC_POST: u16 = 8;
pub const STRONG_PRE: u16 = 16;
pub const STRONG_POST: u16 = 32;
pub const STRONG_NEAR: u16 = 64;
pub const UNC_OR: u16 = 128;
pub const NEG_NEAR_POST: u16 = 256;

const ROLE_NAMES: [(&str, u16); 9] = [
    ("neg_pre", NEG_PRE),
    ("neg_post", NEG_POST),
    ("unc_pre", UNC_PRE),
    ("unc_post", UNC_POST),
    ("strong_pre", STRONG_PRE),
    ("strong_post", STRONG_POST),
    ("strong_near", STRONG_NEAR),
    ("unc_or", UNC_OR),
    ("neg_near_post", NEG_NEAR_POST),
];

// modifier classes (0 = not a modifier for that group)
pub const MOD_NONE: u8 = 0;
pub const MOD_ABNORMAL: u8 = 1;
pub const MOD_NORMAL: u8 = 2;
pub const MOD_UNCERTAIN: u8 = 3;
pub const MOD_STABLE: u8 = 4;

// detail flags (`Info::dflags`): the roles of the detail sections
pub const D_PAIRED: u8 = 1;
pub const D_LOCUS: u8 = 2;
pub const D_JOIN: u8 = 4;
pub const D_ASSOC: u8 = 8;
pub const D_STOP: u8 = 16;
pub const D_UNSIDED: u8 = 32;

/// Most words `detail_window` may cover (a mention's detail scans keep no buffers, but a window this
/// wide already spans a whole sentence).
pub const MAX_DETAIL_WINDOW: usize = 16;

pub const HEADER_NONE: u8 = 0;
pub const HEADER_KEEP: u8 = 1;
pub const HEADER_SKIP: u8 = 2;

/// Most descriptor groups the rules may define.
pub const MAX_GROUPS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub obs: u8,
    /// a positive code counts as uncertain
    pub u: bool,
    /// counted only when positive or uncertain
    pub p: bool,
    /// counted only when the mention heads its sentence (no finding mention before it there)
    pub h: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub tokens: Vec<String>,
    pub prefix: bool,
    pub mentions: Vec<Target>,
    /// descriptor group index, `u8::MAX` when not a descriptor
    pub desc_group: u8,
    pub desc_targets: Vec<Target>,
    /// class per descriptor group, `*` already resolved
    pub mods: [u8; MAX_GROUPS],
    pub triggers: u16,
    pub term: bool,
    pub clause: bool,
    pub header: u8,
    pub skip: bool,
    pub connect: bool,
    pub copula: bool,
    pub conj: bool,
    /// side bits this phrase states (`@side left|right|bilateral`)
    pub side: u8,
    /// `D_*` flags
    pub dflags: u8,
    /// degree this phrase states (`@degree`)
    pub degree: u8,
}

impl Entry {
    #[inline]
    pub fn is_desc(&self) -> bool {
        self.desc_group != u8::MAX
    }
    #[inline]
    pub fn mod_class(&self, group: u8) -> u8 {
        self.mods[group as usize]
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub pre_window: usize,
    pub post_window: usize,
    pub or_window: usize,
    pub or_window_before: usize,
    pub near_window: usize,
    pub desc_window: usize,
    pub prenominal_skip: usize,
    pub detail_window: usize,
}

/// The hot part of an entry, packed for the scope scans.
#[derive(Clone, Copy, Debug, Default)]
pub struct Info {
    pub triggers: u16,
    pub term: bool,
    pub clause: bool,
    pub mention: bool,
    pub skip: bool,
    pub connect: bool,
    pub copula: bool,
    pub conj: bool,
    pub desc_group: u8,
    pub mods: [u8; MAX_GROUPS],
    pub side: u8,
    pub dflags: u8,
    pub degree: u8,
}

impl Info {
    #[inline]
    pub fn is_desc(&self) -> bool {
        self.desc_group != u8::MAX
    }
    #[inline]
    pub fn mod_class(&self, group: u8) -> u8 {
        self.mods[group as usize]
    }
}

pub const NONE: u32 = u32::MAX;

/// Token-level trie of the rule phrases (leftmost-longest, like an Aho-Corasick automaton over
/// `\x01tok\x02` patterns: the longest pattern in bytes wins at a position).
#[derive(Default)]
pub struct Node {
    /// (token id, child node), few per node (the root uses `root` instead)
    pub children: Vec<(u32, u32)>,
    /// entry whose last token ends here
    pub exact: u32,
    /// entries whose last token is a prefix, after this node's path: (prefix, entry)
    pub prefixes: Vec<(Box<[u8]>, u32)>,
}

type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// FxHash (rustc's hasher): fast on the short keys of a vocabulary.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
        self.0 = h;
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub struct Rules {
    pub entries: Vec<Entry>,
    pub info: Vec<Info>,
    /// exact phrase tokens -> id
    pub vocab: FxMap<Box<[u8]>, u32>,
    /// byte length of each vocabulary token
    pub vocab_len: Vec<u32>,
    pub nodes: Vec<Node>,
    /// root's child per token id
    pub root: Vec<u32>,
    /// root's prefix entries, bucketed by first byte
    pub root_prefixes: Vec<Vec<(Box<[u8]>, u32)>>,
    pub groups: Vec<String>,
    pub params: Params,
    pub abbrev: Vec<Vec<u8>>,
}

impl Rules {
    #[inline]
    pub fn is_abbrev(&self, word: &[u8]) -> bool {
        self.abbrev.iter().any(|a| a.as_slice() == word)
    }
}

/// The parsed rules, built once. `build.rs` ran this same parser over these same bytes and
/// refused to build on an error, so the `expect` cannot fire.
pub fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| parse(RULES_TEXT).expect("rules.txt was validated by build.rs"))
}

fn valid_token(t: &str) -> bool {
    t == ","
        || t == ":"
        || (!t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// Every `@` section the parser knows (`@param` is read on its own line).
const SECTION_KINDS: &[&str] = &[
    "abbrev",
    "mention",
    "desc",
    "mod",
    "trigger",
    "term",
    "clause",
    "pseudo",
    "ignore",
    "header",
    "skipword",
    "connect",
    "copula",
    "conj",
    "side",
    "degree",
    "locus",
    "join",
    "assoc",
    "detailstop",
    "unsided",
];

/// `@side` arguments and the side bits they give (`paired` sets `D_PAIRED` instead).
const SIDE_ARGS: [(&str, u8); 3] = [("left", 1), ("right", 2), ("bilateral", 3)];
/// `@degree` arguments and their ordinal codes (`observations::DEGREE_*`).
const DEGREE_ARGS: [(&str, u8); 3] = [("mild", 1), ("moderate", 2), ("severe", 3)];

fn targets(specs: &[&str], lineno: usize) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for spec in specs {
        let spec = spec.trim();
        let (name, flags) = match spec.split_once(':') {
            Some((n, f)) => (n, f),
            None => (spec, ""),
        };
        let obs = OBSERVATIONS
            .iter()
            .position(|o| *o == name)
            .filter(|&i| i != 0)
            .ok_or_else(|| format!("line {lineno}: unknown observation {name:?}"))?;
        if flags.chars().any(|c| !matches!(c, 'u' | 'p' | 'h')) {
            return Err(format!("line {lineno}: unknown flags {flags:?}"));
        }
        out.push(Target {
            obs: obs as u8,
            u: flags.contains('u'),
            p: flags.contains('p'),
            h: flags.contains('h'),
        });
    }
    Ok(out)
}

/// Parse the rule text (the same grammar as `mrgfast/reference/labeler.py`).
pub fn parse(text: &str) -> Result<Rules, String> {
    let mut entries: Vec<Entry> = Vec::new();
    // mods before `*` resolution: per entry, group name -> class
    let mut raw_mods: Vec<Vec<(String, u8)>> = Vec::new();
    let mut desc_names: Vec<Option<String>> = Vec::new();
    let mut index: HashMap<(Vec<String>, bool), usize> = HashMap::new();
    let mut params: HashMap<String, usize> = HashMap::new();
    let mut abbrev: Vec<Vec<u8>> = Vec::new();
    let mut section: Option<(String, String)> = None;
    // line of each entry's first phrase, of each modifier pair, of each @param (for errors)
    let mut entry_line: Vec<usize> = Vec::new();
    let mut mod_line: Vec<Vec<usize>> = Vec::new();
    let mut param_line: HashMap<String, usize> = HashMap::new();
    let mut n_lines = 0usize;

    for (n, raw) in text.lines().enumerate() {
        let lineno = n + 1;
        n_lines = lineno;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('@') {
            let (kind, arg) = match rest.split_once(char::is_whitespace) {
                Some((k, a)) => (k.to_string(), a.trim().to_string()),
                None => (rest.to_string(), String::new()),
            };
            if kind == "param" {
                let mut it = arg.split_whitespace();
                let (name, value) = match (it.next(), it.next()) {
                    (Some(a), Some(b)) => (a, b),
                    _ => return Err(format!("line {lineno}: @param NAME VALUE")),
                };
                let v: usize = value
                    .parse()
                    .map_err(|_| format!("line {lineno}: bad value"))?;
                params.insert(name.to_string(), v);
                param_line.insert(name.to_string(), lineno);
                section = None;
            } else {
                // named at the header's own line (a section with no phrase would otherwise go unseen)
                if !SECTION_KINDS.contains(&kind.as_str()) {
                    return Err(format!("line {lineno}: unknown section @{kind}"));
                }
                section = Some((kind, arg));
            }
            continue;
        }
        let (kind, arg) = section
            .as_ref()
            .ok_or_else(|| format!("line {lineno}: phrase outside a section"))?;
        if kind == "abbrev" {
            if !valid_token(line) || line == "," || line == ":" {
                return Err(format!("line {lineno}: an abbreviation is one word"));
            }
            abbrev.push(line.as_bytes().to_vec());
            continue;
        }
        let mut toks: Vec<String> = line.split(' ').map(|s| s.to_string()).collect();
        let mut prefix = false;
        if let Some(last) = toks.last_mut() {
            if let Some(stripped) = last.strip_suffix('*') {
                *last = stripped.to_string();
                prefix = true;
            }
        }
        if let Some(bad) = toks.iter().find(|t| !valid_token(t)) {
            return Err(format!("line {lineno}: bad token {bad:?} in {line:?}"));
        }
        if prefix && toks.last().map(|t| t == "," || t == ":").unwrap_or(false) {
            return Err(format!("line {lineno}: prefix on punctuation"));
        }
        let key = (toks.clone(), prefix);
        let id = match index.get(&key) {
            Some(&id) => id,
            None => {
                entries.push(Entry {
                    tokens: toks,
                    prefix,
                    desc_group: u8::MAX,
                    ..Default::default()
                });
                raw_mods.push(Vec::new());
                mod_line.push(Vec::new());
                entry_line.push(lineno);
                desc_names.push(None);
                index.insert(key, entries.len() - 1);
                entries.len() - 1
            }
        };
        let e = &mut entries[id];
        match kind.as_str() {
            "mention" => {
                let specs: Vec<&str> = arg.split(';').collect();
                e.mentions.extend(targets(&specs, lineno)?);
            }
            "desc" => {
                let parts: Vec<&str> = arg.split(';').collect();
                let group = parts[0].trim().to_string();
                if let Some(g) = &desc_names[id] {
                    if *g != group {
                        return Err(format!(
                            "line {lineno}: {line:?} is a descriptor of two groups"
                        ));
                    }
                }
                desc_names[id] = Some(group);
                e.desc_targets.extend(targets(&parts[1..], lineno)?);
            }
            "mod" => {
                for pair in arg.split_whitespace() {
                    let (group, cls) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("line {lineno}: GROUP=CLASS"))?;
                    let c = match cls {
                        "abnormal" => MOD_ABNORMAL,
                        "normal" => MOD_NORMAL,
                        "uncertain" => MOD_UNCERTAIN,
                        "stable" => MOD_STABLE,
                        _ => return Err(format!("line {lineno}: unknown modifier class {cls:?}")),
                    };
                    let mods = &mut raw_mods[id];
                    if let Some((_, old)) = mods.iter().find(|(g, _)| g == group) {
                        if *old != c {
                            return Err(format!(
                                "line {lineno}: {line:?} has two classes for {group}"
                            ));
                        }
                    } else {
                        mods.push((group.to_string(), c));
                        mod_line[id].push(lineno);
                    }
                }
            }
            "trigger" => {
                for role in arg.split_whitespace() {
                    let bit = ROLE_NAMES
                        .iter()
                        .find(|(n, _)| *n == role)
                        .map(|(_, b)| *b)
                        .ok_or_else(|| format!("line {lineno}: unknown trigger role {role:?}"))?;
                    e.triggers |= bit;
                }
            }
            "term" => e.term = true,
            "clause" => e.clause = true,
            "pseudo" | "ignore" => {}
            "header" => {
                e.header = match arg.as_str() {
                    "keep" => HEADER_KEEP,
                    "skip" => HEADER_SKIP,
                    _ => return Err(format!("line {lineno}: header must be keep or skip")),
                }
            }
            "skipword" => e.skip = true,
            "connect" => e.connect = true,
            "copula" => e.copula = true,
            "conj" => e.conj = true,
            "side" => {
                if arg == "paired" {
                    e.dflags |= D_PAIRED;
                } else {
                    let bits = SIDE_ARGS
                        .iter()
                        .find(|(n, _)| n == arg)
                        .map(|(_, b)| *b)
                        .ok_or_else(|| {
                            format!("line {lineno}: @side must be left, right, bilateral or paired, got {arg:?}")
                        })?;
                    if e.side != 0 && e.side != bits {
                        return Err(format!("line {lineno}: {line:?} has two sides"));
                    }
                    e.side = bits;
                }
                if e.side != 0 && e.dflags & D_PAIRED != 0 {
                    return Err(format!("line {lineno}: {line:?} has two sides"));
                }
            }
            "degree" => {
                let code = DEGREE_ARGS
                    .iter()
                    .find(|(n, _)| n == arg)
                    .map(|(_, c)| *c)
                    .ok_or_else(|| {
                        format!(
                            "line {lineno}: @degree must be mild, moderate or severe, got {arg:?}"
                        )
                    })?;
                if e.degree != 0 && e.degree != code {
                    return Err(format!("line {lineno}: {line:?} has two degrees"));
                }
                e.degree = code;
            }
            "locus" => e.dflags |= D_LOCUS,
            "join" => e.dflags |= D_JOIN,
            "assoc" => e.dflags |= D_ASSOC,
            "detailstop" => e.dflags |= D_STOP,
            "unsided" => e.dflags |= D_UNSIDED,
            other => return Err(format!("line {lineno}: unknown section @{other}")),
        }
    }

    // descriptor groups, in order of first appearance
    let mut groups: Vec<String> = Vec::new();
    for name in desc_names.iter().flatten() {
        if !groups.contains(name) {
            groups.push(name.clone());
        }
    }
    if groups.len() > MAX_GROUPS {
        return Err(format!(
            "line {n_lines}: {} descriptor groups, at most {MAX_GROUPS}",
            groups.len()
        ));
    }
    for (id, e) in entries.iter_mut().enumerate() {
        if let Some(name) = &desc_names[id] {
            e.desc_group = groups.iter().position(|g| g == name).unwrap_or(0) as u8;
        }
        let star = raw_mods[id]
            .iter()
            .find(|(g, _)| g == "*")
            .map(|(_, c)| *c)
            .unwrap_or(MOD_NONE);
        for (gi, g) in groups.iter().enumerate() {
            e.mods[gi] = raw_mods[id]
                .iter()
                .find(|(n, _)| n == g)
                .map(|(_, c)| *c)
                .unwrap_or(star);
        }
        for ((g, _), line) in raw_mods[id].iter().zip(&mod_line[id]) {
            if g != "*" && !groups.contains(g) {
                return Err(format!(
                    "line {line}: modifier group {g:?} has no descriptor"
                ));
            }
        }
        if (e.term || e.clause) && e.triggers != 0 {
            return Err(format!(
                "line {}: {:?} is both a terminator and a trigger",
                entry_line[id],
                e.tokens.join(" ")
            ));
        }
    }

    let get = |name: &str| {
        params
            .get(name)
            .copied()
            .ok_or_else(|| format!("line {n_lines}: missing @param {name}"))
    };
    let params = Params {
        pre_window: get("pre_window")?,
        post_window: get("post_window")?,
        or_window: get("or_window")?,
        or_window_before: get("or_window_before")?,
        near_window: get("near_window")?,
        desc_window: get("desc_window")?,
        prenominal_skip: get("prenominal_skip")?,
        detail_window: get("detail_window")?,
    };
    if params.detail_window == 0 || params.detail_window > MAX_DETAIL_WINDOW {
        return Err(format!(
            "line {}: detail_window must be between 1 and {MAX_DETAIL_WINDOW}",
            param_line.get("detail_window").copied().unwrap_or(n_lines)
        ));
    }

    if params.desc_window + 2 > MAX_GROUPS * 2 {
        // scope::desc_code keeps at most 16 modifiers; a cluster never exceeds desc_window + 1
        return Err(format!(
            "line {}: desc_window must be at most 14",
            param_line.get("desc_window").copied().unwrap_or(n_lines)
        ));
    }

    // token-level trie (what `label_report` uses; the automaton cross-checks it in tests)
    let mut vocab: FxMap<Box<[u8]>, u32> = FxMap::default();
    let mut vocab_len: Vec<u32> = Vec::new();
    let mut nodes: Vec<Node> = vec![Node {
        exact: NONE,
        ..Default::default()
    }];
    let mut root: Vec<u32> = Vec::new();
    let mut root_prefixes: Vec<Vec<(Box<[u8]>, u32)>> = vec![Vec::new(); 256];
    for (id, e) in entries.iter().enumerate() {
        let last = e.tokens.len() - 1;
        let mut node = 0u32;
        for (i, t) in e.tokens.iter().enumerate() {
            if i == last && e.prefix {
                let pref: Box<[u8]> = t.as_bytes().into();
                if node == 0 {
                    root_prefixes[pref[0] as usize].push((pref, id as u32));
                } else {
                    nodes[node as usize].prefixes.push((pref, id as u32));
                }
                break;
            }
            let tid = match vocab.get(t.as_bytes()) {
                Some(&v) => v,
                None => {
                    let v = vocab_len.len() as u32;
                    vocab.insert(t.as_bytes().into(), v);
                    vocab_len.push(t.len() as u32);
                    root.push(NONE);
                    v
                }
            };
            let child = if node == 0 {
                root[tid as usize]
            } else {
                nodes[node as usize]
                    .children
                    .iter()
                    .find(|(k, _)| *k == tid)
                    .map(|(_, c)| *c)
                    .unwrap_or(NONE)
            };
            let child = if child == NONE {
                nodes.push(Node {
                    exact: NONE,
                    ..Default::default()
                });
                let c = (nodes.len() - 1) as u32;
                if node == 0 {
                    root[tid as usize] = c;
                } else {
                    nodes[node as usize].children.push((tid, c));
                }
                c
            } else {
                child
            };
            node = child;
            if i == last {
                nodes[node as usize].exact = id as u32;
            }
        }
    }
    let info = entries
        .iter()
        .map(|e| Info {
            triggers: e.triggers,
            term: e.term,
            clause: e.clause,
            mention: !e.mentions.is_empty(),
            skip: e.skip,
            connect: e.connect,
            copula: e.copula,
            conj: e.conj,
            desc_group: e.desc_group,
            mods: e.mods,
            side: e.side,
            dflags: e.dflags,
            degree: e.degree,
        })
        .collect();
    Ok(Rules {
        entries,
        info,
        vocab,
        vocab_len,
        nodes,
        root,
        root_prefixes,
        groups,
        params,
        abbrev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse() {
        let r = rules();
        assert!(r.entries.len() > 500, "only {} entries", r.entries.len());
        assert!(r.groups.iter().any(|g| g == "size"));
        // every observation but No Finding has mentions or descriptors
        for (obs, name) in OBSERVATIONS.iter().enumerate().skip(1) {
            let hit = r.entries.iter().any(|e| {
                e.mentions.iter().any(|t| t.obs as usize == obs)
                    || e.desc_targets.iter().any(|t| t.obs as usize == obs)
            });
            assert!(hit, "no rule for {name}");
        }
    }

    #[test]
    fn bad_rules_rejected() {
        let base = "@param pre_window 1\n@param post_window 1\n@param or_window 1\n@param or_window_before 1\n@param near_window 1\n@param desc_window 1\n@param prenominal_skip 1\n@param detail_window 1\n";
        assert!(parse(&format!("{base}@mention Nope\nx\n")).is_err());
        assert!(parse(&format!("{base}@mention Edema\nBad Token\n")).is_err());
        assert!(parse(&format!("{base}@trigger maybe\nx\n")).is_err());
        assert!(parse(&format!("{base}@mention Edema\nedema\n")).is_ok());
        assert!(
            parse("@mention Edema\nedema\n").is_err(),
            "params are required"
        );
    }

    #[test]
    fn every_error_names_its_line() {
        // build.rs turns "line N: ..." into "mrgfast/reference/rules.txt:N: error: ..."
        let base = "@param pre_window 1\n@param post_window 1\n@param or_window 1\n@param or_window_before 1\n@param near_window 1\n@param desc_window 1\n@param prenominal_skip 1\n@param detail_window 1\n";
        let cases = [
            (format!("{base}@mention Edema\nedema\nBad Token\n"), 11),
            (format!("{base}@mention Nope\nx\n"), 10),
            (format!("{base}@trigger neg_pre\nx\n@term\nx\n"), 10),
            (format!("{base}@mod nogroup=normal\nx\n"), 10),
            (format!("{base}@mention Edema\n\nedema\n@bogus\ny\n"), 12),
            (format!("{base}@bogus\n@mention Edema\nedema\n"), 9),
            ("@mention Edema\nedema\n".to_string(), 2),
            (format!("{base}@side up\nx\n"), 10),
            (format!("{base}@side left\nx\n@side right\nx\n"), 12),
            (format!("{base}@side left\nx\n@side paired\nx\n"), 12),
            (format!("{base}@degree huge\nx\n"), 10),
            (format!("{base}@degree mild\nx\n@degree severe\nx\n"), 12),
            (base.replace("detail_window 1", "detail_window 17"), 8),
            (
                format!("{base}@mention Edema\nedema\n@mention Consolidation:ux\nx\n"),
                12,
            ),
            (format!("{base}@trigger neg_near\nx\n"), 10),
        ];
        // the flags and roles that do exist parse
        let good = format!("{base}@mention Consolidation:uph\nx y\n@trigger neg_near_post\nz\n");
        let r = parse(&good).expect("valid rules");
        let e = r
            .entries
            .iter()
            .find(|e| e.tokens == ["x", "y"])
            .expect("x y");
        assert!(e.mentions[0].h && e.mentions[0].u && e.mentions[0].p);
        let z = r.entries.iter().find(|e| e.tokens == ["z"]).expect("z");
        assert_eq!(z.triggers, NEG_NEAR_POST);
        for (text, line) in cases {
            let err = parse(&text).err().expect("must fail");
            assert!(
                err.starts_with(&format!("line {line}: ")),
                "{err:?} should name line {line}"
            );
        }
    }
}
