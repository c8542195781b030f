//! Masking secrets before they reach a snapshot, a log entry or `state.json`.
//!
//! Error messages from database drivers often quote the connection string
//! they failed with. Two shapes carry a password: the userinfo of a URI
//! (`postgres://user:SECRET@host/db`) and the `password=` keyword of a libpq
//! connection string or URI query (`host=h password=SECRET`,
//! `password='a b'`, `?password=SECRET&sslmode=require`).

use std::borrow::Cow;

/// What a masked secret is replaced with.
pub const MASK: &str = "********";

/// `text` with every password it carries replaced by [`MASK`].
///
/// Borrowed when there was nothing to mask, so the common case costs no
/// allocation.
///
/// ```
/// use pgmigrator_metrics::redact;
///
/// assert_eq!(
///     redact("connect postgres://app:hunter2@db:5432/shop failed"),
///     "connect postgres://app:********@db:5432/shop failed"
/// );
/// assert_eq!(redact("host=db password='s3 cr3t' user=app"), "host=db password=******** user=app");
/// ```
pub fn redact(text: &str) -> Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    if !lower.contains("://") && !lower.contains("password") {
        return Cow::Borrowed(text);
    }
    let masked = mask_keywords(&mask_uri_passwords(text));
    if masked == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(masked)
    }
}

/// Masks the password in `scheme://user:password@host` userinfo.
fn mask_uri_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let authority_start = found + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        // The authority ends at the path, query, fragment or the end of the word.
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '"' || c == '\''
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..=colon]);
                        out.push_str(MASK);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Masks the value of every `password` keyword (`password=x`, `password = 'x y'`).
fn mask_keywords(text: &str) -> String {
    const KEY: &str = "password";
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find(KEY) {
        let key_start = search + found;
        let mut i = key_start + KEY.len();
        search = i;
        // Only a whole word: `pgpassword=` or `password_file=` are not this keyword.
        let word_before = key_start > 0 && is_word_byte(bytes[key_start - 1]);
        if word_before || bytes.get(i).is_some_and(|&b| is_word_byte(b)) {
            continue;
        }
        while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            i += 1;
        }
        let value_start = i;
        let value_end = value_end(bytes, value_start);
        if value_end == value_start {
            continue;
        }
        out.push_str(&text[copied..value_start]);
        out.push_str(MASK);
        copied = value_end;
        search = value_end;
    }
    out.push_str(&text[copied..]);
    out
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Where a keyword value starting at `start` ends: a libpq single-quoted value
/// (with `\'` and `\\` escapes) runs to its closing quote, a bare one to the
/// next white space, `&`, `;`, `,` or quote.
fn value_end(bytes: &[u8], start: usize) -> usize {
    if bytes.get(start) == Some(&b'\'') {
        let mut i = start + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'\'' => return i + 1,
                _ => i += 1,
            }
        }
        return bytes.len();
    }
    bytes[start..]
        .iter()
        .position(|&b| b.is_ascii_whitespace() || matches!(b, b'&' | b';' | b',' | b'"' | b'\''))
        .map_or(bytes.len(), |n| start + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_passwords_are_masked() {
        assert_eq!(
            redact("postgres://u:SECRET@h"),
            format!("postgres://u:{MASK}@h")
        );
        assert_eq!(
            redact(
                "dial postgresql://admin:p%40ss@10.0.0.1:5432,10.0.0.2/db?sslmode=require: timeout"
            ),
            format!(
                "dial postgresql://admin:{MASK}@10.0.0.1:5432,10.0.0.2/db?sslmode=require: timeout"
            )
        );
    }

    #[test]
    fn an_at_sign_inside_the_password_is_masked_too() {
        assert_eq!(
            redact("postgres://u:p@ss@host/db"),
            format!("postgres://u:{MASK}@host/db")
        );
    }

    #[test]
    fn uri_without_password_is_unchanged_and_borrowed() {
        for text in [
            "postgres://u@h/db",
            "postgres://h:5432/db",
            "see https://example.com/docs",
            "plain message",
        ] {
            assert!(
                matches!(redact(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
    }

    #[test]
    fn every_uri_in_a_message_is_masked() {
        assert_eq!(
            redact("from postgres://a:one@src to postgres://b:two@dst"),
            format!("from postgres://a:{MASK}@src to postgres://b:{MASK}@dst")
        );
    }

    #[test]
    fn password_keywords_are_masked_in_any_case_and_spacing() {
        assert_eq!(
            redact("host=db password=hunter2 user=app"),
            format!("host=db password={MASK} user=app")
        );
        assert_eq!(redact("PASSWORD = hunter2"), format!("PASSWORD = {MASK}"));
        assert_eq!(
            redact("postgres://h/db?user=u&password=hunter2&sslmode=require"),
            format!("postgres://h/db?user=u&password={MASK}&sslmode=require")
        );
    }

    #[test]
    fn quoted_values_with_escapes_are_masked_whole() {
        assert_eq!(
            redact(r"password='a \' b' host=x"),
            format!("password={MASK} host=x")
        );
        assert_eq!(redact("password='unterminated"), format!("password={MASK}"));
    }

    #[test]
    fn words_that_merely_contain_password_are_left_alone() {
        for text in [
            "password authentication failed for user \"app\"",
            "pgpassword=x is read from the environment",
            "password_file=/etc/x",
            "password=",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn non_ascii_text_is_preserved() {
        assert_eq!(
            redact("échec postgres://ü:sécret@hôte/db — password=ñ"),
            format!("échec postgres://ü:{MASK}@hôte/db — password={MASK}")
        );
    }
}
