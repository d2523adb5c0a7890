//! Interface names as the command line gives them (a literal name, or a shell-style pattern),
//! and as localnet-probe gives them back: escaped for a terminal, quoted for a shell, for
//! nftables and for the command line's own patterns. iproute2 accepts any byte in a name but
//! `/`, `:`, whitespace and NUL, so every name is untrusted text. Names are compared raw;
//! only what is shown is escaped or quoted.

use std::{borrow::Cow, fmt, fmt::Write as _, str::FromStr};

use thiserror::Error;

/// A name given to a flag that is not a valid pattern.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{flag} {pattern:?} is not a valid pattern: {reason}")]
pub struct BadPattern {
    pub pattern: String,
    pub flag: &'static str,
    pub reason: String,
}

/// An interface name as given to `--iface`, `--exclude` or `--drop-on`: a literal name, or a
/// shell-style pattern when it has `*`, `?` or `[`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamePattern {
    Name(String),
    Glob(glob::Pattern),
}

impl NamePattern {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Name(literal) => literal == name,
            Self::Glob(pattern) => pattern.matches(name),
        }
    }

    pub(crate) const fn is_glob(&self) -> bool {
        matches!(self, Self::Glob(_))
    }

    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            Self::Name(name) => Some(name),
            Self::Glob(_) => None,
        }
    }
}

impl FromStr for NamePattern {
    type Err = glob::PatternError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.contains(['*', '?', '[']) {
            glob::Pattern::new(value).map(Self::Glob)
        } else {
            Ok(Self::Name(value.to_owned()))
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Glob(pattern) => f.write_str(pattern.as_str()),
        }
    }
}

/// Interface names given to a flag as plain strings, each a name or a pattern.
#[derive(Debug)]
pub struct NamePatterns(Vec<NamePattern>);

impl NamePatterns {
    pub fn new(values: &[String], flag: &'static str) -> Result<Self, BadPattern> {
        values
            .iter()
            .map(|value| {
                value
                    .parse()
                    .map_err(|error: glob::PatternError| BadPattern {
                        pattern: value.clone(),
                        flag,
                        reason: error.msg.to_owned(),
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The first literal name that is not among `names`.
    pub fn unknown_literal<'a>(
        &self,
        names: impl Iterator<Item = &'a str> + Clone,
    ) -> Option<&str> {
        self.0
            .iter()
            .filter_map(NamePattern::name)
            .find(|literal| !names.clone().any(|name| name == *literal))
    }

    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|pattern| pattern.matches(name))
    }
}

/// Characters a terminal acts on instead of showing: C0 and C1 controls (ESC, BEL, CSI, …), and
/// the invisible format characters that reorder or hide text (bidirectional overrides and
/// isolates, zero-width characters).
fn acts_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// `text` safe for a terminal: every character a terminal would act on escaped as Rust writes
/// it (`\u{1b}`). The one way a name, or text that holds one, reaches a terminal. A command
/// quoted by [`shell_word`] holds none, so it goes through unchanged and can still be pasted.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.contains(acts_on_terminal) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if acts_on_terminal(c) {
            let _ = write!(escaped, "\\u{{{:x}}}", u32::from(c));
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// `word` as one POSIX shell word that means exactly `word` to `sh`, `bash` or `zsh`: itself
/// when only harmless characters, else in single quotes (`'` written `'\''`). Characters a
/// terminal acts on are written `"$(printf '\033')"`, so the word can be shown, copied and
/// pasted without a control byte in it. The one quoting of every command localnet-probe
/// suggests; for arguments, never a command's first word (where `a=b` would be an assignment).
pub fn shell_word(word: &str) -> String {
    let harmless = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '-' | '.' | '/' | ',' | '@' | '%' | '+' | ':' | '=')
    };
    if !word.is_empty() && word.chars().all(harmless) {
        return word.to_owned();
    }
    let mut quoted = String::from("'");
    for c in word.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else if acts_on_terminal(c) {
            quoted.push_str("'\"$(printf '");
            let mut bytes = [0; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                let _ = write!(quoted, "\\{byte:03o}");
            }
            quoted.push_str("')\"'");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    // `''` left by a quote or a control character at either end says nothing.
    let trimmed = quoted.strip_prefix("''").unwrap_or(&quoted);
    let trimmed = trimmed.strip_suffix("''").unwrap_or(trimmed);
    if trimmed.is_empty() {
        "''".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// `name` as an nftables string (`"eth0"`), or `None` when it holds a `"`, which nft's strings
/// cannot, or U+FFFD, which stands for bytes of the kernel's name that are not UTF-8 (names are
/// read with `from_utf8_lossy`), so that the string would name another device. Match such an
/// interface by index: `iif N`.
pub fn nft_string(name: &str) -> Option<String> {
    (!name.contains(['"', char::REPLACEMENT_CHARACTER])).then(|| format!("\"{name}\""))
}

/// The pattern that `--iface`, `--exclude` and `--drop-on` read as `name` and nothing else:
/// `name` itself, or with `*`, `?`, `[` and `]` in brackets (`t3x[*]`) when it has any.
pub fn literal_pattern(name: &str) -> String {
    if name.contains(['*', '?', '[']) {
        glob::Pattern::escape(name)
    } else {
        name.to_owned()
    }
}

/// `name` as the value of `--iface`, `--drop-on` or `--exclude` in a command to be pasted: the
/// pattern of that name alone, as one shell word.
pub fn name_argument(name: &str) -> String {
    shell_word(&literal_pattern(name))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// Names iproute2 accepts that a terminal, a shell, nft or a pattern would read otherwise.
    const HOSTILE: [&str; 10] = [
        "e\u{1b}[31mR",
        "b\u{7}",
        "t;id",
        "t$(id)",
        "t`id`",
        "t*",
        "q\"x",
        "o'x",
        "'",
        "\u{9b}2J\u{202e}x",
    ];

    #[test]
    fn printable_escapes_what_a_terminal_acts_on() {
        assert_eq!(printable("eth0"), "eth0");
        assert_eq!(printable("e\u{1b}[31mR"), "e\\u{1b}[31mR");
        assert_eq!(printable("b\u{7}"), "b\\u{7}");
        assert_eq!(printable("\u{9b}2J\u{202e}x"), "\\u{9b}2J\\u{202e}x");
        for name in HOSTILE {
            assert!(!printable(name).contains(acts_on_terminal), "{name:?}");
        }
    }

    #[test]
    fn shell_words_mean_exactly_the_name_to_sh() {
        for name in HOSTILE.iter().copied().chain(["eth0", "a.b", "a=b", ""]) {
            let word = shell_word(name);
            assert!(!word.contains(acts_on_terminal), "{word:?}");
            assert_eq!(printable(&word), word);
            let output = Command::new("sh")
                .args(["-c", &format!("printf %s {word}")])
                .output()
                .expect("run sh");
            assert!(output.status.success(), "{word}: {output:?}");
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                name,
                "sh read {word} otherwise"
            );
        }
        assert_eq!(shell_word("eth0"), "eth0");
        assert_eq!(shell_word("t;id"), "'t;id'");
        assert_eq!(shell_word("o'x"), "'o'\\''x'");
    }

    #[test]
    fn a_literal_pattern_matches_its_name_alone() {
        for (name, other) in [("t*", "tx"), ("t?", "ta"), ("t[ab]", "ta"), ("[", "x")] {
            let pattern: NamePattern = literal_pattern(name).parse().expect("a valid pattern");
            assert!(pattern.matches(name), "{name}");
            assert!(!pattern.matches(other), "{name} matches {other}");
        }
        assert_eq!(literal_pattern("eth0"), "eth0");
        assert_eq!(name_argument("t*"), "'t[*]'");
    }

    #[test]
    fn nft_strings_refuse_a_quote() {
        assert_eq!(nft_string("eth0").as_deref(), Some("\"eth0\""));
        assert_eq!(nft_string("q\"x"), None);
        assert_eq!(nft_string(&String::from_utf8_lossy(b"n\xff")), None);
    }
}
