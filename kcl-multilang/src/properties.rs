//! The Java `.properties` file format, as `java.util.Properties.load` reads it: `key = value`, `key: value` or
//! `key value`; `#` and `!` comments; a trailing backslash continues a line; `\t \n \r \f \uXXXX` escapes. Each entry
//! keeps the line it started on, so a bad value can be reported as `file:line`.

/// One `key = value` entry of a properties file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key, unescaped.
    pub key: String,
    /// The value, unescaped, leading whitespace removed (trailing whitespace is kept, as Java does).
    pub value: String,
    /// The 1-based line the entry starts on.
    pub line: usize,
}

/// Reads every entry of a properties file's text, in order (a later entry for the same key wins, as in Java).
pub fn parse(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((index, raw)) = lines.next() {
        let first = raw.trim_start_matches([' ', '\t', '\u{c}']);
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes continues onto the next line, whose
        // leading whitespace is dropped.
        let mut logical = String::from(first);
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start_matches([' ', '\t', '\u{c}'])),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        entries.push(Entry { key: unescape(key), value: unescape(value), line: index + 1 });
    }
    entries
}

fn ends_with_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Splits at the first unescaped `=`, `:` or whitespace; whitespace around the separator is skipped.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (at, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' | ' ' | '\t' | '\u{c}' => {
                let key = &line[..at];
                let mut rest = line[at..].trim_start_matches([' ', '\t', '\u{c}']);
                if c.is_whitespace() || c == '\u{c}' {
                    if let Some(after) = rest.strip_prefix(['=', ':']) {
                        rest = after;
                    }
                } else {
                    rest = &rest[1..];
                }
                return (key, rest.trim_start_matches([' ', '\t', '\u{c}']));
            }
            _ => {}
        }
    }
    (line, "")
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).filter(|_| hex.len() == 4) {
                    Some(decoded) => {
                        out.push(decoded);
                        chars.nth(3);
                    }
                    // Java throws on a malformed \u escape; keeping the text lets the key's own check report it.
                    None => out.push_str("\\u"),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String, usize)> {
        parse(text).into_iter().map(|e| (e.key, e.value, e.line)).collect()
    }

    #[test]
    fn reads_java_properties_syntax() {
        type Case = (&'static str, &'static [(&'static str, &'static str, usize)]);
        let cases: &[Case] = &[
            ("a = b", &[("a", "b", 1)]),
            ("a=b", &[("a", "b", 1)]),
            ("a:b", &[("a", "b", 1)]),
            ("a b", &[("a", "b", 1)]),
            ("a  =  b c ", &[("a", "b c ", 1)]),
            ("  # comment\n! other\n\nk = v", &[("k", "v", 4)]),
            ("k = one \\\n    two", &[("k", "one two", 1)]),
            ("k = ends with \\\\", &[("k", "ends with \\", 1)]),
            ("a\\=b = c", &[("a=b", "c", 1)]),
            ("k = tab\\there \\u0041", &[("k", "tab\there A", 1)]),
            ("k", &[("k", "", 1)]),
            ("k = 1\nk = 2", &[("k", "1", 1), ("k", "2", 2)]),
            ("executableName = python3 app.py --flag", &[("executableName", "python3 app.py --flag", 1)]),
        ];
        for (text, expected) in cases {
            let expected: Vec<_> = expected.iter().map(|(k, v, l)| (k.to_string(), v.to_string(), *l)).collect();
            assert_eq!(pairs(text), expected, "{text:?}");
        }
    }
}
