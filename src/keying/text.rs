//! Message text normalization: Unicode NFC, white space trimmed at both ends and inner
//! runs collapsed to one space, optionally case-folded.

use std::borrow::Cow;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// Returns `text` normalized; borrows when it already is (the common case for ASCII).
pub fn normalize_text(text: &str, case_insensitive: bool) -> Cow<'_, str> {
    if is_already_normal(text, case_insensitive) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    let mut push = |c: char, out: &mut String| {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            if case_insensitive {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
        }
    };
    if matches!(is_nfc_quick(text.chars()), IsNormalized::Yes) {
        for c in text.chars() {
            push(c, &mut out);
        }
    } else {
        for c in text.nfc() {
            push(c, &mut out);
        }
    }
    // Lower-casing can produce characters that need recomposition.
    if case_insensitive && !matches!(is_nfc_quick(out.chars()), IsNormalized::Yes) {
        return Cow::Owned(out.nfc().collect());
    }
    Cow::Owned(out)
}

fn is_already_normal(text: &str, case_insensitive: bool) -> bool {
    let bytes = text.as_bytes();
    if !bytes.is_ascii() {
        return false;
    }
    if bytes.first().is_some_and(u8::is_ascii_whitespace)
        || bytes.last().is_some_and(u8::is_ascii_whitespace)
    {
        return false;
    }
    let mut previous_space = false;
    for &b in bytes {
        // Only a single plain space between words is already canonical.
        // ASCII white space as `char::is_whitespace` sees it (it includes VT, 0x0b).
        let space = b.is_ascii_whitespace() || b == 0x0b;
        if space && (b != b' ' || previous_space) {
            return false;
        }
        if case_insensitive && b.is_ascii_uppercase() {
            return false;
        }
        previous_space = space;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_collapses_white_space() {
        assert_eq!(
            normalize_text("  What\tare \n\n your   hours? ", false),
            "What are your hours?"
        );
        assert_eq!(normalize_text("\u{00a0}a\u{2003}b\u{3000}", false), "a b");
        assert_eq!(normalize_text("", false), "");
        assert_eq!(normalize_text(" \t\n", false), "");
        assert!(matches!(
            normalize_text("already fine", false),
            Cow::Borrowed(_)
        ));
        assert_eq!(normalize_text("a\u{000b}b", false), "a b");
    }

    #[test]
    fn applies_nfc() {
        // "é" as e + combining acute vs the precomposed code point.
        assert_eq!(normalize_text("cafe\u{301}", false), "caf\u{e9}");
        assert_eq!(normalize_text("caf\u{e9}", false), "caf\u{e9}");
    }

    #[test]
    fn folds_case_only_when_asked() {
        assert_eq!(normalize_text("Hello WORLD", false), "Hello WORLD");
        assert_eq!(normalize_text("Hello WORLD", true), "hello world");
        assert_eq!(normalize_text("ÉCOLE", true), "école");
    }
}
