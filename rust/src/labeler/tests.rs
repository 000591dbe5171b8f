//! Unit tests of the labeler on real report phrasing, plus a proptest fuzz (no panic, valid
//! codes, linear time on long inputs).

use super::{label_report, label_report_details};
use crate::observations::{index_of, Labels, BLANK, N_OBS, SIDED};
use proptest::prelude::*;

fn codes(text: &str) -> Vec<(&'static str, i8)> {
    let l = label_report(text);
    (0..N_OBS)
        .filter(|&i| l[i] != BLANK)
        .map(|i| (crate::observations::OBSERVATIONS[i], l[i]))
        .collect()
}

fn get(l: &Labels, name: &str) -> i8 {
    l[index_of(name).expect("observation")]
}

#[track_caller]
fn check(text: &str, want: &[(&str, i8)]) {
    let l = label_report(text);
    let mut expect = [BLANK; N_OBS];
    for &(name, c) in want {
        expect[index_of(name).expect("observation")] = c;
    }
    assert_eq!(l, expect, "{text:?}: got {:?}", codes(text));
}

/// (code, side, degree) of one observation with details.
#[track_caller]
fn detail(text: &str, name: &str) -> (i8, i8, i8) {
    let d = label_report_details(text);
    let i = index_of(name).expect("observation");
    (d.labels[i], d.sides[i], d.degrees[i])
}

#[test]
fn details_from_the_phrase_and_its_scope() {
    // (text, observation, code, side 0/1 left/2 right/3 bilateral, degree 0/1 mild/2 moderate/3 severe)
    let cases: &[(&str, &str, i8, i8, i8)] = &[
        ("Left basilar opacity.", "Lung Opacity", 1, 1, 0),
        ("Opacity at the right base.", "Lung Opacity", 1, 2, 0),
        ("Bilateral effusions.", "Pleural Effusion", 1, 3, 0),
        ("Small left effusion.", "Pleural Effusion", 1, 1, 1),
        (
            "Effusions, left greater than right.",
            "Pleural Effusion",
            1,
            3,
            0,
        ),
        ("Pleural effusions.", "Pleural Effusion", 1, 3, 0),
        (
            "Small right pleural effusions.",
            "Pleural Effusion",
            1,
            2,
            1,
        ),
        (
            "Moderate to large left pleural effusion.",
            "Pleural Effusion",
            1,
            1,
            3,
        ),
        ("Basilar atelectasis.", "Atelectasis", 1, 3, 0),
        (
            "Left effusion and right pneumothorax.",
            "Pneumothorax",
            1,
            2,
            0,
        ),
        (
            "Left effusion and right pneumothorax.",
            "Pleural Effusion",
            1,
            1,
            0,
        ),
        (
            "Pneumothorax at the left apex and right chest tube.",
            "Support Devices",
            1,
            2,
            0,
        ),
        (
            "Pneumothorax at the left apex and right chest tube.",
            "Pneumothorax",
            1,
            1,
            0,
        ),
        (
            "Pacemaker with leads in the right atrium.",
            "Support Devices",
            1,
            0,
            0,
        ),
        (
            "Mild left basilar opacity, likely atelectasis.",
            "Atelectasis",
            -1,
            1,
            1,
        ),
        (
            "Large right effusion with adjacent atelectasis.",
            "Atelectasis",
            1,
            2,
            0,
        ),
        ("The heart is mildly enlarged.", "Cardiomegaly", 1, 0, 1),
        (
            "Left heart border, mild cardiomegaly.",
            "Cardiomegaly",
            1,
            0,
            1,
        ),
        (
            "Heart size remains slightly large.",
            "Cardiomegaly",
            1,
            0,
            1,
        ),
        (
            "No right effusion. Small left effusion.",
            "Pleural Effusion",
            1,
            1,
            1,
        ),
        ("No left pneumothorax.", "Pneumothorax", 0, 0, 0),
        ("Healed fracture of the right 6th rib.", "Fracture", 1, 2, 0),
    ];
    for &(text, obs, code, side, degree) in cases {
        assert_eq!(
            detail(text, obs),
            (code, side, degree),
            "{text:?} {obs}: (code, side, degree)"
        );
    }
}

#[test]
fn empty_and_whitespace_are_blank() {
    assert_eq!(label_report(""), [BLANK; N_OBS]);
    assert_eq!(label_report("  \n\t\r\n \u{3000}"), [BLANK; N_OBS]);
    // non-empty text without findings: No Finding
    check("PA and lateral views of the chest.", &[("No Finding", 1)]);
    check("...", &[("No Finding", 1)]);
}

#[test]
fn negation_before_and_after() {
    check(
        "No pneumothorax.",
        &[("Pneumothorax", 0), ("No Finding", 1)],
    );
    check(
        "Pneumothorax is not seen.",
        &[("Pneumothorax", 0), ("No Finding", 1)],
    );
    check(
        "The left pleural effusion has resolved.",
        &[("Pleural Effusion", 0), ("No Finding", 1)],
    );
    check(
        "No focal consolidation, pleural effusion, or pneumothorax.",
        &[
            ("Consolidation", 0),
            ("Pleural Effusion", 0),
            ("Pneumothorax", 0),
            ("No Finding", 1),
        ],
    );
    check(
        "No XXXX of pleural effusion.",
        &[("Pleural Effusion", 0), ("No Finding", 1)],
    );
}

#[test]
fn scopes_end_at_contrast_words_and_sentences() {
    check(
        "No pneumothorax, but there is a small left pleural effusion.",
        &[("Pneumothorax", 0), ("Pleural Effusion", 1)],
    );
    check(
        "No effusion; small left apical pneumothorax.",
        &[("Pneumothorax", 1), ("Pleural Effusion", 0)],
    );
    check(
        "No pneumothorax. Small left effusion.",
        &[("Pneumothorax", 0), ("Pleural Effusion", 1)],
    );
}

#[test]
fn uncertainty() {
    check(
        "Possible small right pleural effusion.",
        &[("Pleural Effusion", -1)],
    );
    check("Pneumonia cannot be excluded.", &[("Pneumonia", -1)]);
    check(
        "No definite consolidation, although early pneumonia cannot be excluded.",
        &[("Consolidation", 0), ("Pneumonia", -1)],
    );
    check(
        "Left basilar atelectasis versus consolidation.",
        &[("Atelectasis", -1), ("Consolidation", -1)],
    );
    check(
        "Retrocardiac opacity, likely atelectasis.",
        &[("Lung Opacity", 1), ("Atelectasis", -1)],
    );
}

#[test]
fn differential_heading_its_sentence() {
    // flag h: the atelectasis / infiltrate differential adds Consolidation only as the sentence's first finding
    check(
        "Left basilar atelectasis versus infiltrate.",
        &[
            ("Lung Opacity", -1),
            ("Atelectasis", -1),
            ("Consolidation", -1),
        ],
    );
    check(
        "Left basilar opacity, atelectasis versus infiltrate.",
        &[
            ("Lung Opacity", 1),
            ("Atelectasis", -1),
            ("Consolidation", BLANK),
        ],
    );
    check(
        "Small effusion. Infiltrate or atelectasis at the right base.",
        &[
            ("Pleural Effusion", 1),
            ("Lung Opacity", -1),
            ("Atelectasis", -1),
            ("Consolidation", -1),
        ],
    );
    check(
        "No atelectasis or infiltrate.",
        &[("Atelectasis", 0), ("Lung Opacity", 0), ("No Finding", 1)],
    );
    // the details path reads the same codes
    let d =
        label_report_details("Hazy opacity, atelectasis or infiltrate. Atelectasis or infiltrate.");
    assert_eq!(get(&d.labels, "Consolidation"), -1);
    let d = label_report_details("Hazy opacity, atelectasis or infiltrate.");
    assert_eq!(get(&d.labels, "Consolidation"), BLANK);
}

#[test]
fn explained_as_hiatal_hernia() {
    // neg_near_post: negative for the one mention just before
    check(
        "Retrocardiac density compatible with hiatal hernia.",
        &[("Lung Opacity", 0), ("No Finding", 1)],
    );
    check(
        "Cardiomegaly and retrocardiac density due to the known hiatal hernia.",
        &[("Cardiomegaly", 1), ("Lung Opacity", 0)],
    );
    check("Cardiomegaly and hiatal hernia.", &[("Cardiomegaly", 1)]);
}

#[test]
fn pseudo_negations_negate_nothing() {
    check(
        "No change in the small left pneumothorax.",
        &[("Pneumothorax", 1)],
    );
    check(
        "No significant change in the moderate cardiomegaly.",
        &[("Cardiomegaly", 1)],
    );
    check(
        "The right pleural effusion has not resolved.",
        &[("Pleural Effusion", 1)],
    );
}

#[test]
fn normal_statements() {
    check(
        "The lungs are clear.",
        &[("Lung Opacity", 0), ("No Finding", 1)],
    );
    check(
        "Heart size is normal.",
        &[("Cardiomegaly", 0), ("No Finding", 1)],
    );
    check("The heart is enlarged.", &[("Cardiomegaly", 1)]);
    check(
        "The cardiomediastinal silhouette is within normal limits.",
        &[("Enlarged Cardiomediastinum", 0), ("No Finding", 1)],
    );
    check(
        "Osseous structures are intact.",
        &[("Fracture", 0), ("No Finding", 1)],
    );
    check(
        "The costophrenic angles are sharp.",
        &[("Pleural Effusion", 0), ("No Finding", 1)],
    );
    check("Borderline heart size.", &[("Cardiomegaly", -1)]);
}

#[test]
fn support_devices_do_not_block_no_finding() {
    check(
        "Endotracheal tube terminates 4 cm above the carina.",
        &[("Support Devices", 1), ("No Finding", 1)],
    );
    check(
        "The endotracheal tube has been removed.",
        &[("Support Devices", 0), ("No Finding", 1)],
    );
}

#[test]
fn sections_and_lists() {
    check(
        "INDICATION: Evaluate for pneumonia.\nFINDINGS: The lungs are clear.",
        &[("Lung Opacity", 0), ("No Finding", 1)],
    );
    check(
        "IMPRESSION:\n1. No pneumothorax\n2. Small right pleural effusion",
        &[("Pneumothorax", 0), ("Pleural Effusion", 1)],
    );
    check(
        "No pneumothorax\n\nMild bibasilar atelectasis",
        &[("Pneumothorax", 0), ("Atelectasis", 1)],
    );
}

#[test]
fn aggregation_prefers_positive_then_uncertain() {
    let l = label_report("No effusion on the right. Possible small left effusion.");
    assert_eq!(get(&l, "Pleural Effusion"), -1);
    let l = label_report("Possible left effusion. Definite small right pleural effusion.");
    assert_eq!(get(&l, "Pleural Effusion"), 1);
}

#[test]
fn survives_hostile_input() {
    let nasty = [
        "\u{0}\u{0}no\u{0}effusion\u{0}",
        "é".repeat(1000).as_str().to_owned().leak(),
        "................................",
        ",,,,;;;;::::....????!!!!",
        "\u{FEFF}Cardiomegaly\u{200B}.",
        "no no no no no no no no no no no not not not or or or vs vs",
        "🙂 pneumothorax 🙂",
        "\n\n\n1.\n2.\n-\n*\n\u{2022}",
    ];
    for t in nasty {
        let l = label_report(t);
        assert!(l.iter().all(|c| matches!(*c, 1 | 0 | -1 | BLANK)), "{t:?}");
    }
}

fn elapsed(text: &str) -> f64 {
    let t = std::time::Instant::now();
    let l = label_report(text);
    std::hint::black_box(l);
    t.elapsed().as_secs_f64()
}

#[test]
fn linear_time_on_long_reports() {
    let unit = "No pneumothorax, effusion or consolidation is seen and the heart is not enlarged. \
                Possible left lower lobe atelectasis versus pneumonia, cannot exclude effusion. ";
    let small: String = unit.repeat(2_000);
    let big: String = unit.repeat(8_000);
    let no_breaks: String = "no effusion or pneumonia , possible nodule vs mass ".repeat(40_000);
    let (a, b) = (elapsed(&small).max(1e-4), elapsed(&big));
    assert!(b / a < 12.0, "4x the text took {:.1}x the time", b / a);
    assert!(elapsed(&no_breaks) < 5.0);
}

fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::char::range('a', 'z'),
        1 => prop::char::range('A', 'Z'),
        1 => prop::char::range('0', '9'),
        2 => Just(' '),
        2 => prop::sample::select(vec!['.', ',', ';', ':', '?', '!', '-', '*', '/', '(', ')', '\n', '\r', '\t', '\u{0}', '\u{1}', '\u{7f}', '\u{2022}', '\u{a0}', '\u{3000}', 'é', 'ß', '\u{10FFFF}', '😀', '\u{200B}']),
        1 => any::<char>(),
    ]
}

const WORDS: &[&str] = &[
    "no",
    "not",
    "without",
    "possible",
    "cannot",
    "be",
    "excluded",
    "or",
    "versus",
    "vs",
    "but",
    "however",
    "effusion",
    "pleural",
    "pneumothorax",
    "cardiomegaly",
    "heart",
    "size",
    "normal",
    "enlarged",
    "lungs",
    "clear",
    "opacity",
    "consolidation",
    "edema",
    "atelectasis",
    "tube",
    "fracture",
    "intact",
    "XXXX",
    "change",
    "stable",
    "unchanged",
    "new",
    "findings:",
    "impression:",
    "indication:",
    "1.",
    "Dr.",
    "2.5",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn fuzz_chars_never_panic(s in prop::collection::vec(hostile_char(), 0..300)) {
        let text: String = s.into_iter().collect();
        let l = label_report(&text);
        prop_assert!(l.iter().all(|c| matches!(*c, 1 | 0 | -1 | BLANK)));
        let blank = text.chars().all(char::is_whitespace);
        if blank {
            prop_assert!(l.iter().all(|c| *c == BLANK));
        } else {
            prop_assert!(l[0] == 1 || l[0] == BLANK);
        }
    }

    #[test]
    fn fuzz_details_keep_the_codes(ws in prop::collection::vec((prop::sample::select(WORDS), prop::sample::select(vec![" ", ", ", ". ", " left ", " right ", " bilateral ", " small ", " at the ", " and ", " with "])), 0..80)) {
        let text: String = ws.into_iter().map(|(w, sep)| format!("{w}{sep}")).collect();
        let d = label_report_details(&text);
        prop_assert_eq!(d.labels, label_report(&text));
        for (i, &sided) in SIDED.iter().enumerate() {
            let present = matches!(d.labels[i], 1 | -1);
            prop_assert!((0..=3).contains(&d.sides[i]) && (0..=3).contains(&d.degrees[i]));
            prop_assert!(present || (d.sides[i] == 0 && d.degrees[i] == 0));
            prop_assert!(sided || d.sides[i] == 0);
        }
    }

    #[test]
    fn fuzz_words_never_panic(ws in prop::collection::vec((prop::sample::select(WORDS), prop::sample::select(vec![" ", " ", ", ", ". ", "\n", "; ", "\n\n", "-"])), 0..80)) {
        let text: String = ws.into_iter().map(|(w, sep)| format!("{w}{sep}")).collect();
        let l = label_report(&text);
        prop_assert!(l.iter().all(|c| matches!(*c, 1 | 0 | -1 | BLANK)));
        // No Finding is 1 exactly when no finding other than Support Devices is 1 or -1
        let finding = (1..13).any(|i| matches!(l[i], 1 | -1));
        prop_assert_eq!(l[0] == 1, !finding && !text.chars().all(char::is_whitespace));
    }
}

/// Throughput probe: `MRGFAST_CORPUS=/path/to/list.json cargo test --release -- --ignored --nocapture speed`
#[test]
#[ignore]
fn speed_probe() {
    let Ok(path) = std::env::var("MRGFAST_CORPUS") else {
        return;
    };
    let text = std::fs::read_to_string(path).expect("corpus");
    // a JSON list of strings, parsed crudely (no serde in this crate)
    let body = text.trim().trim_start_matches('[').trim_end_matches(']');
    let mut reports = Vec::new();
    let mut cur = String::new();
    let mut in_str = false;
    let mut esc = false;
    for ch in body.chars() {
        if in_str {
            if esc {
                cur.push(match ch {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    c => c,
                });
                esc = false;
            } else if ch == '\\' {
                esc = true;
            } else if ch == '"' {
                in_str = false;
                reports.push(std::mem::take(&mut cur));
            } else {
                cur.push(ch);
            }
        } else if ch == '"' {
            in_str = true;
        }
    }
    let _ = label_report("warm up");
    let t = std::time::Instant::now();
    let mut acc = 0i64;
    for _ in 0..5 {
        for r in &reports {
            acc += label_report(r)[3] as i64;
        }
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "{} reports x5 in {:.3}s: {:.0} reports/s/thread ({acc})",
        reports.len(),
        dt,
        5.0 * reports.len() as f64 / dt
    );
}

#[test]
#[ignore]
fn speed_phases() {
    let Ok(path) = std::env::var("MRGFAST_CORPUS") else {
        return;
    };
    let text = std::fs::read_to_string(path).expect("corpus");
    let reports: Vec<String> = text
        .split("\", \"")
        .map(|s| s.replace("\\n", "\n"))
        .collect();
    let r = super::rules::rules();
    let mut toks = super::sentences::Tokens::default();
    let t = std::time::Instant::now();
    let mut acc = 0usize;
    for _ in 0..5 {
        for rep in &reports {
            super::sentences::tokenize(rep, r, &mut toks);
            acc += toks.toks.len();
        }
    }
    let tok = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    for _ in 0..5 {
        for rep in &reports {
            super::sentences::tokenize(rep, r, &mut toks);
            for i in 0..toks.toks.len() {
                acc += super::match_at(r, &toks, i) as usize & 1;
            }
        }
    }
    let ac = t.elapsed().as_secs_f64() - tok;
    let t = std::time::Instant::now();
    for _ in 0..5 {
        for rep in &reports {
            acc += label_report(rep)[2] as usize;
        }
    }
    let all = t.elapsed().as_secs_f64();
    let n = 5.0 * reports.len() as f64;
    println!(
        "per report: tokenize {:.2}us, ac {:.2}us, total {:.2}us ({acc})",
        tok / n * 1e6,
        ac / n * 1e6,
        all / n * 1e6
    );
}

/// The token trie implements exactly the leftmost-longest Aho-Corasick semantics of the rule
/// patterns (the definition shared with the Python reference).
fn trie_vs_automaton(text: &str) -> Result<(), TestCaseError> {
    let r = super::rules::rules();
    static AC: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    let ac = AC.get_or_init(|| super::automaton::automaton(r).expect("automaton"));
    let mut t = super::sentences::Tokens::default();
    super::sentences::tokenize(text, r, &mut t);
    let mut by_start = std::collections::HashMap::new();
    for m in ac.find_iter(&t.hay[..]) {
        by_start.insert(m.start(), m.pattern().as_u32());
    }
    let mut i = 0;
    while i < t.toks.len() {
        let want = by_start
            .get(&t.toks[i].start)
            .copied()
            .unwrap_or(super::rules::NONE);
        let got = super::match_at(r, &t, i);
        prop_assert_eq!(got, want, "token {} of {:?}", i, text);
        i += if got == super::rules::NONE {
            1
        } else {
            r.entries[got as usize].tokens.len()
        };
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, .. ProptestConfig::default() })]
    #[test]
    fn trie_matches_like_aho_corasick(ws in prop::collection::vec((0usize..2000, prop::sample::select(vec![" ", ", ", ": ", "-", "s ", "ed "])), 0..40)) {
        let r = super::rules::rules();
        let text: String = ws.into_iter().map(|(k, sep)| {
            let e = &r.entries[k % r.entries.len()];
            format!("{}{}", e.tokens.join(" "), sep)
        }).collect();
        trie_vs_automaton(&text)?;
    }
}
