//! Masking secrets before they reach a snapshot, a log entry or `state.json`.
//!
//! This is the last line of defence: messages about connections are built
//! from parsed, masked parts ([`ConnInfo`](crate::pg::ConnInfo) does that
//! for the monitor), but a driver or a pipeline may still hand us free
//! text that quotes a connection string. The rules follow the parser that
//! connects (tokio-postgres, which follows libpq), and where a rule is
//! ambiguous they mask more, never less:
//!
//! - URI userinfo: `scheme://user:SECRET@host`. The password runs from the
//!   first `:` after `://` to the **first** `@` after it, whatever lies in
//!   between (`/`, `?`, `#`, spaces and quotes included), as the parser
//!   reads it.
//! - URI query parameters whose percent-decoded key names a password
//!   (`?password=…`, `?sslpassword=…`, `?pass%77ord=…`): the value runs to
//!   the next `&` or the end of the text.
//! - Keywords whose name ends in `password` (`password=`, `sslpassword=`,
//!   `PGPASSWORD=`, any case, spaces around `=`): a single-quoted value to
//!   its closing quote (`\'` and `\\` escapes), a bare one to the next
//!   white space that is not escaped with `\`.
//! - JSON members whose key ends in `password`: `"password": "…"`.
//!
//! Log fields are also masked by their key ([`is_secret_key`]).

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
    if !might_hold_a_secret(text) {
        return Cow::Borrowed(text);
    }
    let masked = mask_keywords(&mask_query_params(&mask_userinfo(text)));
    if masked == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(masked)
    }
}

/// Whether a log field named `key` holds a secret whatever its value looks
/// like: names ending in `password` or `passwd`, or containing `secret` or
/// `token` (any case).
///
/// ```
/// use pgmigrator_metrics::redact::is_secret_key;
///
/// assert!(is_secret_key("password"));
/// assert!(is_secret_key("sslPassword"));
/// assert!(is_secret_key("api_token"));
/// assert!(!is_secret_key("table"));
/// ```
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.ends_with("password")
        || key.ends_with("passwd")
        || key.contains("secret")
        || key.contains("token")
}

/// A cheap pre-check: every rule needs `://`, a key ending in `password`,
/// or a query key that may be percent-encoded.
fn might_hold_a_secret(text: &str) -> bool {
    text.contains("://") || text.contains('%') || contains_ignore_ascii_case(text, "password")
}

fn contains_ignore_ascii_case(text: &str, needle: &str) -> bool {
    text.as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Whether a (decoded) parameter or keyword name names a password.
fn is_password_key(key: &[u8]) -> bool {
    const KEY: &[u8] = b"password";
    key.len() >= KEY.len() && key[key.len() - KEY.len()..].eq_ignore_ascii_case(KEY)
}

/// Masks the password in the userinfo of every URI: from the first `:`
/// after `://` to the first `@` after it.
fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let after_scheme = found + 3;
        out.push_str(&rest[..after_scheme]);
        rest = &rest[after_scheme..];
        if let Some(at) = credentials_end(rest)
            && let Some(colon) = rest[..at].find(':')
        {
            out.push_str(&rest[..=colon]);
            out.push_str(MASK);
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

/// The `@` that ends the credentials of the URI `rest` follows. The parser
/// stops at the first `@`; a raw `@` typed into a password moves the real
/// end further, so the mask runs on to the last `@` before the host part
/// ends (a `/`, `?`, `#` or white space).
fn credentials_end(rest: &str) -> Option<usize> {
    let first = rest.find('@')?;
    let tail = &rest[first + 1..];
    let host_end = tail
        .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
        .unwrap_or(tail.len());
    Some(tail[..host_end].rfind('@').map_or(first, |n| first + 1 + n))
}

/// Masks the value of every query parameter (`?key=value` or
/// `&key=value`) whose percent-decoded key names a password. The value runs
/// to the next `&`, or to the end of the text, as the parser reads it.
fn mask_query_params(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !matches!(bytes[i], b'?' | b'&') {
            i += 1;
            continue;
        }
        let key_start = i + 1;
        let key_len = bytes[key_start..]
            .iter()
            .position(|&b| matches!(b, b'=' | b'&' | b'?') || b.is_ascii_whitespace());
        i = key_start;
        let Some(key_len) = key_len else { break };
        let equals = key_start + key_len;
        if bytes[equals] != b'=' || !is_password_key(&percent_decode(&bytes[key_start..equals])) {
            continue;
        }
        let value_start = equals + 1;
        let value_end = query_value_end(bytes, value_start);
        if value_end > value_start {
            out.push_str(&text[copied..value_start]);
            out.push_str(MASK);
            copied = value_end;
        }
        i = value_end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Where a query value starting at `start` ends: the next `&`, or the end.
fn query_value_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&b| b == b'&')
        .map_or(bytes.len(), |n| start + n)
}

/// `%XX` escapes decoded; a malformed escape is kept as it is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2)))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Masks the value of every keyword or JSON member whose key ends in
/// `password`.
fn mask_keywords(text: &str) -> String {
    const KEY: &str = "password";
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = find_ignore_ascii_case(&bytes[search..], KEY.as_bytes()) {
        let mut i = search + found + KEY.len();
        search = i;
        // `passwords=` or `password_file=` name something else; any prefix
        // (`sslpassword`, `PGPASSWORD`) still names a password.
        if bytes.get(i).is_some_and(|&b| is_word_byte(b)) {
            continue;
        }
        // In a URI query (`?password=` or `&sslpassword=`) the value runs
        // to the next `&`, as there; elsewhere by the keyword rules.
        let key_start = bytes[..search - KEY.len()]
            .iter()
            .rposition(|&b| !is_word_byte(b))
            .map_or(0, |n| n + 1);
        let in_query = key_start > 0 && matches!(bytes[key_start - 1], b'?' | b'&');
        let json = bytes.get(i) == Some(&b'"');
        if json {
            i += 1;
        }
        i = skip_blanks(bytes, i);
        let separator = if json { b':' } else { b'=' };
        if bytes.get(i) != Some(&separator) {
            continue;
        }
        let value_start = skip_blanks(bytes, i + 1);
        let value_end = if json {
            json_string_end(bytes, value_start)
        } else if in_query {
            query_value_end(bytes, value_start)
        } else {
            keyword_value_end(bytes, value_start)
        };
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

fn find_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// Where a keyword value starting at `start` ends, as the parser reads it:
/// a single-quoted value runs to its closing quote, a bare one to the next
/// white space; in both a `\` escapes the character after it.
fn keyword_value_end(bytes: &[u8], start: usize) -> usize {
    let quoted = bytes.get(start) == Some(&b'\'');
    let mut i = start + usize::from(quoted);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\'' if quoted => return i + 1,
            b if !quoted && (b.is_ascii_whitespace() || is_unicode_space_start(bytes, i)) => {
                return i;
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Whether a non-ASCII white space character (which also ends a bare
/// value: the parser uses `char::is_whitespace`) starts at `i`.
fn is_unicode_space_start(bytes: &[u8], i: usize) -> bool {
    if bytes[i] < 0x80 {
        return false;
    }
    std::str::from_utf8(&bytes[i..bytes.len().min(i + 4)])
        .or_else(|err| std::str::from_utf8(&bytes[i..i + err.valid_up_to()]))
        .ok()
        .and_then(|s| s.chars().next())
        .is_some_and(char::is_whitespace)
}

/// Where a JSON string starting at `start` (its opening quote) ends, just
/// past its closing quote; not a string: `start`.
fn json_string_end(bytes: &[u8], start: usize) -> usize {
    if bytes.get(start) != Some(&b'"') {
        return start;
    }
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(text: &str) -> String {
        redact(text).into_owned()
    }

    #[test]
    fn uri_passwords_are_masked() {
        assert_eq!(
            masked("postgres://u:SECRET@h"),
            format!("postgres://u:{MASK}@h")
        );
        assert_eq!(
            masked(
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
            masked("postgres://u:p@ss@host/db"),
            format!("postgres://u:{MASK}@host/db")
        );
    }

    #[test]
    fn uri_passwords_run_to_the_first_at_sign_whatever_they_hold() {
        // The parser reads credentials up to the first `@`: `/`, `?`, `#`,
        // quotes and spaces are all part of the password.
        for password in ["/?#' \"", "a/b", "x?y", "p#q", "it's", "two words", "a:b"] {
            let text = format!("connect postgres://monitor:{password}@127.0.0.1:5432/postgres");
            let out = masked(&text);
            assert_eq!(
                out,
                format!("connect postgres://monitor:{MASK}@127.0.0.1:5432/postgres"),
                "{password:?}"
            );
        }
    }

    #[test]
    fn uri_without_password_is_unchanged_and_borrowed() {
        for text in [
            "postgres://u@h/db",
            "postgres://h:5432/db",
            "see https://example.com/docs",
            "plain message",
            "postgres://h/db?sslmode=require&application_name=x",
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
            masked("from postgres://a:one@src to postgres://b:two@dst"),
            format!("from postgres://a:{MASK}@src to postgres://b:{MASK}@dst")
        );
    }

    #[test]
    fn password_keywords_are_masked_in_any_case_and_spacing() {
        assert_eq!(
            masked("host=db password=hunter2 user=app"),
            format!("host=db password={MASK} user=app")
        );
        assert_eq!(masked("PASSWORD = hunter2"), format!("PASSWORD = {MASK}"));
        assert_eq!(
            masked("postgres://h/db?user=u&password=hunter2&sslmode=require"),
            format!("postgres://h/db?user=u&password={MASK}&sslmode=require")
        );
    }

    #[test]
    fn bare_values_run_to_unescaped_white_space() {
        assert_eq!(
            masked("password=ab,secret x=1"),
            format!("password={MASK} x=1")
        );
        assert_eq!(masked("password=a;b&c"), format!("password={MASK}"));
        assert_eq!(
            masked(r"password=a\ bsecret host=h"),
            format!("password={MASK} host=h")
        );
        // A non-ASCII space ends a bare value too (the parser's rule).
        assert_eq!(
            masked("password=ab\u{3000}host=h"),
            format!("password={MASK}\u{3000}host=h")
        );
    }

    #[test]
    fn quoted_values_with_escapes_are_masked_whole() {
        assert_eq!(
            masked(r"password='a \' b' host=x"),
            format!("password={MASK} host=x")
        );
        assert_eq!(masked("password='unterminated"), format!("password={MASK}"));
    }

    #[test]
    fn every_key_ending_in_password_is_masked() {
        for key in ["sslpassword", "SSLPassword", "PGPASSWORD", "db_password"] {
            assert_eq!(
                masked(&format!("{key}=s3cret x")),
                format!("{key}={MASK} x")
            );
        }
    }

    #[test]
    fn percent_encoded_query_keys_are_decoded_before_matching() {
        assert_eq!(
            masked("postgres://h/db?pass%77ord=s3cret&sslmode=require"),
            format!("postgres://h/db?pass%77ord={MASK}&sslmode=require")
        );
        assert_eq!(
            masked("postgres://h/db?%70%61%73%73%77%6F%72%64=a b#c"),
            format!("postgres://h/db?%70%61%73%73%77%6F%72%64={MASK}")
        );
    }

    #[test]
    fn json_password_members_are_masked() {
        assert_eq!(
            masked(r#"{"user":"u","password":"s3 \"cr\" et","x":1}"#),
            format!(r#"{{"user":"u","password":{MASK},"x":1}}"#)
        );
        assert_eq!(
            masked(r#"{"sslpassword" : "x"}"#),
            format!(r#"{{"sslpassword" : {MASK}}}"#)
        );
    }

    #[test]
    fn words_that_merely_contain_password_are_left_alone() {
        for text in [
            "password authentication failed for user \"app\"",
            "password_file=/etc/x",
            "passwords=3",
            "password=",
            "45% done",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn non_ascii_text_is_preserved() {
        assert_eq!(
            masked("échec postgres://ü:sécret@hôte/db — password=ñ"),
            format!("échec postgres://ü:{MASK}@hôte/db — password={MASK}")
        );
    }

    #[test]
    fn an_escape_before_a_multibyte_character_keeps_char_boundaries() {
        assert_eq!(masked("password=a\\é"), format!("password={MASK}"));
        assert_eq!(masked("password=\\é x"), format!("password={MASK} x"));
    }

    #[test]
    fn secret_keys_are_recognised_by_name() {
        for key in [
            "password",
            "PASSWORD",
            "sslpassword",
            "db_passwd",
            "secret",
            "client_secret",
            "token",
            "api_token",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["table", "error", "target", "password_file", "user"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}

/// The property the module promises: whatever password the connection
/// parser accepts, in whatever form it is written, none of it survives.
#[cfg(all(test, feature = "postgres"))]
mod agrees_with_the_parser {
    use proptest::prelude::*;

    use super::{MASK, redact};

    /// Every byte but NUL (which no connection string can carry), weighted
    /// towards the characters that end values and URI parts.
    fn password() -> impl Strategy<Value = String> {
        let special = prop::sample::select(vec![
            '/', '?', '#', '\'', '"', ' ', '\\', '@', '%', '&', '=', ':', ';', ',', '\t', '\n',
            '\u{3000}', 'é',
        ]);
        let ch = prop_oneof![
            3 => (0x20u8..0x7f).prop_map(char::from),
            2 => special,
            1 => any::<char>().prop_filter("no NUL", |c| *c != '\0'),
        ];
        prop::collection::vec(ch, 6..24).prop_map(|chars| chars.into_iter().collect())
    }

    /// Every byte but unreserved ones as `%XX`.
    fn encode(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// A libpq keyword value: `\` before `\`, `'` and, when bare, white space.
    fn escape(text: &str, bare: bool) -> String {
        let mut out = String::new();
        for c in text.chars() {
            if c == '\\' || c == '\'' || (bare && c.is_whitespace()) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    /// The forms a password is written in: (text, parsed by the connection
    /// parser as a whole connection string).
    fn forms(pw: &str) -> Vec<(String, bool)> {
        let mut forms = vec![
            (format!("postgres://app:{}@db:5432/shop", encode(pw)), true),
            (
                format!(
                    "postgres://db/shop?sslmode=disable&password={}&user=app",
                    encode(pw)
                ),
                true,
            ),
            (
                format!("postgresql://db/shop?pass%77ord={}", encode(pw)),
                true,
            ),
            (
                format!("host=db password='{}' user=app", escape(pw, false)),
                true,
            ),
            (
                format!("host=db password = {} user=app", escape(pw, true)),
                true,
            ),
            (
                format!("host=db sslpassword='{}' user=app", escape(pw, false)),
                false,
            ),
            (
                format!("host=db PassWord={} user=app", escape(pw, true)),
                false,
            ),
            (
                format!(
                    "{{\"user\":\"app\",\"password\":{}}}",
                    serde_json::to_string(pw).unwrap()
                ),
                false,
            ),
        ];
        if !pw.contains(['@', '%']) {
            forms.push((format!("postgres://app:{pw}@db:5432/shop"), true));
        }
        if !pw.contains(['&', '%', '@']) {
            forms.push((format!("postgres://db/shop?password={pw}"), true));
        }
        forms
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
        ))]

        #[test]
        fn no_form_of_any_password_survives(pw in password()) {
            for (text, parsed) in forms(&pw) {
                if parsed {
                    let config: tokio_postgres::Config = text.parse()
                        .map_err(|err| TestCaseError::fail(format!("{text:?}: {err}")))?;
                    prop_assert_eq!(config.get_password(), Some(pw.as_bytes()), "{:?}", text);
                }
                // Only what the password alone accounts for can be checked.
                let context = text.replace(&pw, "");
                prop_assume!(!context.contains(&pw) && !MASK.contains(&pw));
                let out = redact(&text);
                prop_assert!(!out.contains(&pw), "{:?} became {:?}", text, out);
                for written in [encode(&pw), escape(&pw, false), escape(&pw, true)] {
                    if !context.contains(&written) {
                        prop_assert!(!out.contains(&written), "{:?} became {:?}", text, out);
                    }
                }
                // In a longer message too.
                let message = format!("cannot connect to {text}: connection refused");
                prop_assert!(!redact(&message).contains(&pw));
            }
        }
    }
}
