//! The semantic cache's last word: two questions whose embeddings are close may still
//! ask different things, and an embedding barely moves for one word. Before a stored
//! answer is served for a new question, the two must agree on everything an embedding
//! glosses over:
//!
//! - **negation**: `not`, `never`, `can't`, 不, 没有, 别, ...;
//! - **polarity**: one side of an opposite pair (`open`/`closed`, `turn on`/`turn off`,
//!   `enable`/`disable`, 打开/关闭, 增加/减少, ...);
//! - **numbers**: every run of digits (order numbers, amounts, dates, versions, codes with
//!   letters such as `A1-42`) and Chinese numerals, compared as multisets;
//! - **entities**: capitalized words not opening a sentence, and quoted names
//!   (`"Pro plan"`, 「会员」), compared case-insensitively;
//! - **scope**: `all`/`any`/`only`/`none`/`each`, `daily`/`per month`/..., 所有/只/每天/...,
//!   and the unit after `per` (`per user` vs `per team`);
//! - **opposites by prefix**: `compatible`/`incompatible`, `connect`/`disconnect`,
//!   `available`/`unavailable` (a word and the same word with `un`, `in`, `dis`, ...);
//! - **content** (Chinese): each question naming characters the other lacks (a
//!   substitution such as 密码 → 路由器) is refused; function characters (怎么, 如何,
//!   吗, 需要, ...) do not count. Measured: English-only embedding models read unknown
//!   Chinese characters as the same `[UNK]`, so this is what stops 怎么重置密码 from
//!   being served the answer to 怎么重置路由器 (bench/RESULTS.md).
//!
//! Pure and conservative: any disagreement refuses (a refused paraphrase costs one relay
//! call; a served trap is a wrong answer). English and Chinese are handled; other
//! languages still get the number and entity checks.

use std::collections::BTreeSet;

use unicode_normalization::UnicodeNormalization;

mod lexicon;

use lexicon::{
    CJK_FUNCTION, NEGATING_PREFIXES, NEGATIONS_EN, NEGATIONS_ZH, POLES_EN, POLES_ZH, SCOPE_EN,
    SCOPE_ZH, chinese_digit,
};

/// Why a candidate was refused (a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Negation,
    Polarity,
    Number,
    Entity,
    Scope,
    /// Chinese: the questions name different things (characters substituted).
    Content,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Negation => "negation",
            Self::Polarity => "polarity",
            Self::Number => "number",
            Self::Entity => "entity",
            Self::Scope => "scope",
            Self::Content => "content",
        }
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF)
}

/// What the checks compare, extracted once per question.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Features {
    negations: usize,
    poles: BTreeSet<&'static str>,
    numbers: Vec<String>,
    entities: BTreeSet<String>,
    scope: BTreeSet<&'static str>,
    /// Units after `per` (`per user`).
    units: BTreeSet<String>,
    /// Distinct words (English), for opposites made with a prefix.
    words: BTreeSet<String>,
    /// Chinese characters that carry content (function characters left out).
    cjk: BTreeSet<char>,
}

/// Lower-cased words (letters, digits, `'`, `-`), with a space on each side so whole
/// words and phrases match with `contains(" word ")`.
fn words(text: &str) -> String {
    let mut out = String::from(" ");
    for c in text.chars() {
        if c.is_alphanumeric() && !is_cjk(c) || c == '\'' || c == '-' {
            out.extend(c.to_lowercase());
        } else {
            out.push(' ');
        }
    }
    out.push(' ');
    // Collapse runs of spaces so phrases match across punctuation.
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if !(c == ' ' && collapsed.ends_with(' ')) {
            collapsed.push(c);
        }
    }
    collapsed
}

fn has_word(words: &str, word: &str) -> bool {
    words.contains(&format!(" {word} "))
}

impl Features {
    pub fn of(question: &str) -> Self {
        let text: String = question.nfkc().collect();
        let lower = words(&text);
        let negations = lower
            .split(' ')
            .filter(|w| NEGATIONS_EN.contains(w) || w.ends_with("n't"))
            .count()
            + NEGATIONS_ZH
                .iter()
                .map(|w| text.matches(w).count())
                .sum::<usize>();
        let poles_en = POLES_EN
            .iter()
            .flat_map(|(a, b)| [*a, *b])
            .filter(|side| has_word(&lower, side));
        let poles_zh = POLES_ZH
            .iter()
            .flat_map(|(a, b)| [*a, *b])
            .filter(|side| text.contains(side));
        let scope_en = SCOPE_EN.iter().copied().filter(|w| has_word(&lower, w));
        let scope_zh = SCOPE_ZH.iter().copied().filter(|w| text.contains(w));
        let tokens: Vec<&str> = lower.split(' ').filter(|w| !w.is_empty()).collect();
        let units = tokens
            .windows(2)
            .filter(|w| w[0] == "per")
            .map(|w| w[1].to_owned())
            .collect();
        let cjk = text
            .chars()
            .filter(|c| is_cjk(*c) && !CJK_FUNCTION.contains(c) && chinese_digit(*c).is_none())
            .collect();
        Self {
            units,
            words: tokens.iter().map(|w| (*w).to_owned()).collect(),
            cjk,
            negations,
            poles: poles_en.chain(poles_zh).collect(),
            numbers: numbers(&text),
            entities: entities(&text),
            scope: scope_en.chain(scope_zh).collect(),
        }
    }
}

/// Every token holding a digit (with the letters and `-./:` glued to it, so `A1-42` and
/// `2024-05-01` stay whole), and every run of Chinese numerals; sorted.
fn numbers(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current = String::new();
    let mut has_digit = false;
    let mut flush = |current: &mut String, has_digit: &mut bool| {
        let token = current
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        if *has_digit && !token.is_empty() {
            found.push(token);
        }
        current.clear();
        *has_digit = false;
    };
    for c in text.chars() {
        if let Some(d) = chinese_digit(c) {
            if !current.is_empty() && !has_digit {
                flush(&mut current, &mut has_digit);
            }
            current.push(d);
            has_digit = true;
        } else if c.is_ascii_alphanumeric()
            || (matches!(c, '-' | '.' | ':' | '/' | ',') && !current.is_empty())
        {
            has_digit |= c.is_ascii_digit();
            current.push(c);
        } else {
            flush(&mut current, &mut has_digit);
        }
    }
    flush(&mut current, &mut has_digit);
    found.sort();
    found
}

/// Capitalized words that do not open a sentence, and quoted phrases; lower-cased.
fn entities(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut sentence_start = true;
    for raw in text.split_whitespace() {
        let word = raw.trim_matches(|c: char| !c.is_alphanumeric());
        let capitalized = word.chars().next().is_some_and(char::is_uppercase)
            && word.chars().any(char::is_lowercase)
            || word.len() > 1
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                && word.chars().any(|c| c.is_ascii_uppercase());
        if capitalized && !sentence_start && word != "I" {
            found.insert(word.to_lowercase());
        }
        sentence_start = raw.ends_with(['.', '?', '!', '。', '？', '！']);
    }
    for (open, close) in [
        ('"', '"'),
        ('“', '”'),
        ('「', '」'),
        ('『', '』'),
        ('《', '》'),
        ('‘', '’'),
    ] {
        let mut rest = text;
        while let Some(start) = rest.find(open) {
            let after = &rest[start + open.len_utf8()..];
            let Some(end) = after.find(close) else { break };
            let quoted = after[..end].trim().to_lowercase();
            if !quoted.is_empty() {
                found.insert(quoted);
            }
            rest = &after[end + close.len_utf8()..];
        }
    }
    found
}

/// Whether the stored answer to `stored` may be served for `asked`.
pub fn verify(stored: &str, asked: &str) -> Result<(), Reason> {
    let (a, b) = (Features::of(stored), Features::of(asked));
    if (a.negations % 2) != (b.negations % 2) {
        return Err(Reason::Negation);
    }
    if a.poles != b.poles {
        return Err(Reason::Polarity);
    }
    if a.numbers != b.numbers {
        return Err(Reason::Number);
    }
    if a.entities != b.entities {
        return Err(Reason::Entity);
    }
    if a.scope != b.scope || a.units != b.units {
        return Err(Reason::Scope);
    }
    if opposite_by_prefix(&a.words, &b.words) || opposite_by_prefix(&b.words, &a.words) {
        return Err(Reason::Polarity);
    }
    if !a.cjk.is_subset(&b.cjk) && !b.cjk.is_subset(&a.cjk) {
        return Err(Reason::Content);
    }
    Ok(())
}

/// Whether a word only `a` has appears in `b` with a negating prefix (`compatible` /
/// `incompatible`).
fn opposite_by_prefix(a: &BTreeSet<String>, b: &BTreeSet<String>) -> bool {
    a.difference(b).filter(|w| w.len() >= 4).any(|word| {
        NEGATING_PREFIXES
            .iter()
            .any(|prefix| b.contains(&format!("{prefix}{word}")))
    })
}

#[cfg(test)]
mod tests;
