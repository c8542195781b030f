//! Making untrusted text safe to print on a terminal.
//!
//! Table names, error messages and phase names come from databases,
//! pipelines and state files that another user may have written. Printed
//! raw, an escape sequence in one of them can retitle the terminal, move
//! the cursor over earlier lines, or write the clipboard (OSC 52). Every
//! text the command line prints passes through here first.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character written as a visible escape: C0
/// controls as `\n`, `\t`, `\r`, `\e` or `\xNN`, DEL and C1 controls as
/// `\u{NN}`, and the bidirectional overrides that reorder what a line
/// shows as `\u{NNNN}`. Borrowed when there is nothing to escape.
///
/// ```
/// use pgmigrator_metrics::printable::printable;
///
/// assert_eq!(printable("orders"), "orders");
/// assert_eq!(printable("evil\x1b]0;owned\x07"), r"evil\e]0;owned\x07");
/// assert_eq!(printable("a\nb"), r"a\nb");
/// ```
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// [`printable`], cut to at most `max_chars` characters of the original
/// text with a note of how much was left out: for one line of a report,
/// where a 60 MB error message must not scroll everything else away.
///
/// ```
/// use pgmigrator_metrics::printable::printable_line;
///
/// assert_eq!(printable_line("short", 10), "short");
/// assert_eq!(printable_line(&"x".repeat(30), 10), "xxxxxxxxxx… (20 more characters)");
/// ```
pub fn printable_line(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => printable(text),
        Some((cut, _)) => {
            let more = text[cut..].chars().count();
            Cow::Owned(format!(
                "{}… ({more} more characters)",
                printable(&text[..cut])
            ))
        }
    }
}

/// JSON text with the characters a terminal acts on but JSON may carry raw
/// (DEL, C1 controls, bidirectional overrides) written as `\uXXXX`
/// escapes, which any JSON reader decodes back. `json` must be valid
/// JSON: these characters can only occur inside its strings.
pub fn printable_json(json: String) -> String {
    if !json
        .chars()
        .any(|c| needs_escape(c) && !c.is_ascii_whitespace())
    {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        // JSON's own white space between tokens stays; other controls
        // can only be inside strings, where an escape means the same.
        if needs_escape(c) && !matches!(c, '\n' | '\r' | '\t') {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// A PostgreSQL string literal whose value is `text`, safe to print and to
/// run whatever the server's settings: always an escape string (`E'…'`),
/// which reads the same under any `standard_conforming_strings` (in a plain
/// `'…'`, a backslash escapes the closing quote when that setting is off).
/// A quote is doubled, a backslash doubled, and a character a terminal
/// would act on written as a `\uXXXX` escape, which the server decodes.
#[cfg(feature = "postgres")]
pub(crate) fn sql_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    out.push_str("E'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            // Controls and bidi marks all lie in the Basic Multilingual Plane.
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// Characters that change the display order of the text around them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x1b' => out.push_str("\\e"),
        c if c.is_ascii_control() => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sequences_are_shown_not_acted_on() {
        // OSC 52 writes the clipboard; CSI moves the cursor; a C1 CSI
        // (U+009B) does the same on terminals that honour it.
        let hostile = "t\x1b]52;c;ZXZpbA==\x07\x1b[2J\u{9b}31m\u{202e}gnp.exe\x7f";
        let shown = printable(hostile);
        assert!(!shown.chars().any(needs_escape), "{shown}");
        assert_eq!(
            shown,
            r"t\e]52;c;ZXZpbA==\x07\e[2J\u{9b}31m\u{202e}gnp.exe\x7f"
        );
    }

    #[test]
    fn plain_and_non_ascii_text_is_borrowed_unchanged() {
        for text in ["public.orders", "données — 東京", ""] {
            assert!(matches!(printable(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn long_lines_are_cut_on_character_boundaries() {
        let text = "é".repeat(1000);
        let line = printable_line(&text, 100);
        assert!(line.starts_with(&"é".repeat(100)));
        assert!(line.ends_with("… (900 more characters)"), "{line}");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn sql_literals_quote_and_escape_what_a_terminal_would_act_on() {
        assert_eq!(sql_literal("public.orders"), "E'public.orders'");
        assert_eq!(sql_literal("it's"), "E'it''s'");
        // A backslash never escapes the closing quote, whatever the
        // server's standard_conforming_strings.
        assert_eq!(sql_literal(r"a\"), r"E'a\\'");
        assert_eq!(sql_literal(r"x\', 1); DROP"), r"E'x\\'', 1); DROP'");
        assert_eq!(sql_literal("x\x1b[2J\u{202e}"), r"E'x\u001B[2J\u202E'");
    }

    #[test]
    fn json_keeps_its_meaning_without_raw_controls() {
        let value = serde_json::json!({ "name": "a\u{9b}b\u{202e}c\x7f" });
        let json = printable_json(serde_json::to_string(&value).unwrap());
        assert!(!json.chars().any(needs_escape), "{json}");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back, value);
    }
}
