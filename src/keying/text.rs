//! Message text normalization: Unicode NFC, full-width ASCII forms folded to ASCII
//! (`？` `，` `ＡＢＣ１２３`, what Chinese and Japanese input methods type), white space
//! trimmed at both ends and inner runs collapsed to one space (the ideographic space
//! included), optionally case-folded.

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
        let c = fold_width(c);
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

/// U+FF01..U+FF5E (full-width `！` to `～`) are the ASCII characters `!` to `~` drawn
/// wide: the same text for a model. Only this block is folded: NFKC would also turn
/// `x²` into `x2` and `①` into `1`, which can change a question's meaning.
fn fold_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
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
    fn full_width_forms_fold_to_ascii_and_nothing_else_does() {
        assert_eq!(normalize_text("退货要多久？", false), "退货要多久?");
        assert_eq!(normalize_text("你好，世界！", false), "你好,世界!");
        assert_eq!(normalize_text("ＡＢＣ１２３", false), "ABC123");
        assert_eq!(normalize_text("订单（４８２１３）", false), "订单(48213)");
        assert_eq!(normalize_text("ＡＢＣ", true), "abc");
        // Compatibility characters that carry meaning stay as they are.
        assert_eq!(normalize_text("x² ① ﬁ", false), "x² ① ﬁ");
        // CJK punctuation outside the block is not ASCII drawn wide: kept.
        assert_eq!(normalize_text("你好。「是」", false), "你好。「是」");
    }

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
