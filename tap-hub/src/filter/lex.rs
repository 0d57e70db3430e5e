//! The one pass over the filter's text before CEL's parser sees it: the word
//! operators `and`, `or` and `not` become `&&`, `||` and `!`, and bracket
//! nesting is bounded.
//!
//! The words are replaced in place and padded with spaces (`and` becomes
//! `&& `), so every character keeps its position and the parser's columns are
//! the user's without a map between the two.

use super::{FilterError, MAX_DEPTH, column_at};

/// `src` with the word operators replaced, or an error when brackets nest
/// deeper than [`MAX_DEPTH`]: CEL's parser needs a lot of stack per level.
pub(super) fn rewrite_aliases(src: &str) -> Result<String, FilterError> {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut depth = 0usize;
    // A word right after `.` is a field name (`request.or`), not an operator.
    let mut after_dot = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' => {
                i = skip_string(b, i, false);
                after_dot = false;
                continue;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(FilterError::new(
                        column_at(src, i),
                        format!(
                            "filter nested too deeply: more than {MAX_DEPTH} levels of brackets"
                        ),
                    ));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &b[start..i];
                if matches!(b.get(i), Some(b'"' | b'\'')) && is_string_prefix(word) {
                    let raw = word.iter().any(|c| c.eq_ignore_ascii_case(&b'r'));
                    i = skip_string(b, i, raw);
                } else if !after_dot {
                    let replacement: &[u8] = match word {
                        b"and" => b"&& ",
                        b"or" => b"||",
                        b"not" => b"!  ",
                        _ => word,
                    };
                    out[start..i].copy_from_slice(replacement);
                }
                after_dot = false;
                continue;
            }
            _ if c.is_ascii_digit() => {
                // `1and` is one (bad) number token to CEL, not `1 and`.
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                after_dot = false;
                continue;
            }
            _ => {}
        }
        after_dot = c == b'.';
        i += 1;
    }
    // Only ASCII letters were replaced, by ASCII: the text is still UTF-8.
    String::from_utf8(out).map_err(|_| FilterError::new(1, "filter is not valid UTF-8"))
}

/// CEL's string prefixes: raw and bytes, in any case and order.
fn is_string_prefix(word: &[u8]) -> bool {
    matches!(
        word.to_ascii_lowercase().as_slice(),
        b"r" | b"b" | b"rb" | b"br"
    )
}

/// The index after the string literal whose opening quote is at `start`
/// (the end of the text when it is not closed: the parser reports that).
fn skip_string(b: &[u8], start: usize, raw: bool) -> usize {
    let q = b[start];
    let triple = b.get(start + 1) == Some(&q) && b.get(start + 2) == Some(&q);
    let mut i = start + if triple { 3 } else { 1 };
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && !raw {
            i += 2;
            continue;
        }
        if c == q {
            if !triple {
                return i + 1;
            }
            if b.get(i + 1) == Some(&q) && b.get(i + 2) == Some(&q) {
                return i + 3;
            }
        } else if c == b'\n' && !triple {
            return i;
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_become_operators_of_the_same_length() {
        let cases = [
            ("a and b", "a &&  b"),
            ("a or b", "a || b"),
            ("not a", "!   a"),
            ("not(a)", "!  (a)"),
            ("android or orca", "android || orca"),
            ("request.or and x", "request.or &&  x"),
            ("request. and", "request. and"),
            (
                r#""a and b" and 'or' or r"not""#,
                r#""a and b" &&  'or' || r"not""#,
            ),
            (r#""it's \" and" or x"#, r#""it's \" and" || x"#),
            ("'''a ' and ''' and b", "'''a ' and ''' &&  b"),
            ("1and 2", "1and 2"),
            ("a // and\nor b", "a // and\n|| b"),
            ("é and ü", "é &&  ü"),
            ("AND Or", "AND Or"),
        ];
        for (src, want) in cases {
            let got = rewrite_aliases(src).unwrap();
            assert_eq!(got, want, "{src}");
            assert_eq!(got.len(), src.len());
        }
    }

    #[test]
    fn deep_brackets_are_refused_at_the_bracket() {
        let ok = "(".repeat(MAX_DEPTH) + "a" + &")".repeat(MAX_DEPTH);
        assert!(rewrite_aliases(&ok).is_ok());
        let deep = "x == ".to_string() + &"[".repeat(MAX_DEPTH + 1);
        let err = rewrite_aliases(&deep).unwrap_err();
        assert_eq!(err.column, 6 + MAX_DEPTH);
        assert!(err.message.contains("nested"));
    }
}
