//! Interface names as the command line gives them (a literal name, or a shell-style pattern),
//! and as localnet-probe gives them back: escaped for a terminal, quoted for a shell, for
//! nftables and for the command line's own patterns. iproute2 accepts any byte in a name but
//! `/`, `:`, whitespace and NUL, so every name is untrusted text, and not always UTF-8: a name
//! is held as its [`name_of_bytes`] text, which keeps every byte ([`bytes_of_name`] gives them
//! back for a command). Names are compared as that text; only what is shown is escaped or quoted.

use std::{
    borrow::Cow, ffi::OsStr, fmt, fmt::Write as _, os::unix::ffi::OsStrExt as _, str::FromStr,
};

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

impl NamePattern {
    /// The pattern of a command-line value, which may hold any byte: its [`name_of_bytes`] text.
    pub fn from_os(value: &OsStr) -> Result<Self, glob::PatternError> {
        name_of_bytes(value.as_bytes()).parse()
    }
}

/// The text an interface name is held as, given the kernel's bytes (`IFLA_IFNAME`) or the
/// command line's: UTF-8 as it is but a backslash, written `\\`, and every byte that is not
/// UTF-8 written `\xNN`, so that two names are one text only if they are the same bytes.
pub fn name_of_bytes(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                text.push_str("\\\\");
            } else {
                text.push(c);
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(text, "\\x{byte:02x}");
        }
    }
    text
}

/// The bytes of the name held as `name` (see [`name_of_bytes`]).
pub fn bytes_of_name(name: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('\\') {
        bytes.extend_from_slice(&rest.as_bytes()[..at]);
        let escape = &rest[at..];
        let byte = escape
            .get(2..4)
            .filter(|hex| {
                escape.as_bytes().get(1) == Some(&b'x')
                    && hex.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match byte {
            Some(byte) => {
                bytes.push(byte);
                rest = &escape[4..];
            }
            // `\\`, or a lone backslash (not made by `name_of_bytes`) taken as it is.
            None => {
                bytes.push(b'\\');
                rest = escape.strip_prefix("\\\\").unwrap_or(&escape[1..]);
            }
        }
    }
    bytes.extend_from_slice(rest.as_bytes());
    bytes
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
    pub fn new(values: &[impl AsRef<OsStr>], flag: &'static str) -> Result<Self, BadPattern> {
        values
            .iter()
            .map(|value| {
                NamePattern::from_os(value.as_ref()).map_err(|error| BadPattern {
                    pattern: name_of_bytes(value.as_ref().as_bytes()),
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
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
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
/// terminal acts on, and bytes that are not UTF-8, are written `"$(printf '\033')"` (not
/// `$'\x1b'`, which dash, Debian's `sh`, reads as a `$` and a quoted string), so the word can
/// be shown, copied and pasted without a control byte in it. The one quoting of every command
/// localnet-probe suggests; for arguments, never a command's first word (where `a=b` would be
/// an assignment).
pub fn shell_word(word: &str) -> String {
    shell_bytes(word.as_bytes())
}

/// [`shell_word`] of any bytes.
pub fn shell_bytes(word: &[u8]) -> String {
    let harmless = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '-' | '.' | '/' | ',' | '@' | '%' | '+' | ':' | '=')
    };
    if let Ok(word) = std::str::from_utf8(word)
        && !word.is_empty()
        && word.chars().all(harmless)
    {
        return word.to_owned();
    }
    let mut quoted = String::from("'");
    let printf = |quoted: &mut String, bytes: &[u8]| {
        quoted.push_str("'\"$(printf '");
        for byte in bytes {
            let _ = write!(quoted, "\\{byte:03o}");
        }
        quoted.push_str("')\"'");
    };
    for chunk in word.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\'' {
                quoted.push_str("'\\''");
            } else if acts_on_terminal(c) {
                let mut bytes = [0; 4];
                printf(&mut quoted, c.encode_utf8(&mut bytes).as_bytes());
            } else {
                quoted.push(c);
            }
        }
        if !chunk.invalid().is_empty() {
            printf(&mut quoted, chunk.invalid());
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

/// The interface `name` as one shell word: its bytes, as [`shell_bytes`] quotes them.
pub fn name_word(name: &str) -> String {
    shell_bytes(&bytes_of_name(name))
}

/// The interface `name` as an nftables string (`"eth0"`), its bytes, which nft takes as they
/// are, with a last `*` written `\*` (else nft reads a wildcard); `None` when it holds a `"`,
/// which nft's strings cannot. Match such an interface by index: `iif N`.
pub fn nft_string(name: &str) -> Option<Vec<u8>> {
    let bytes = bytes_of_name(name);
    if bytes.contains(&b'"') {
        return None;
    }
    let mut string = b"\"".to_vec();
    match bytes.strip_suffix(b"*") {
        Some(before) => {
            string.extend_from_slice(before);
            string.extend_from_slice(b"\\*");
        }
        None => string.extend_from_slice(&bytes),
    }
    string.push(b'"');
    Some(string)
}

/// The pattern that `--iface`, `--exclude` and `--drop-on` read as `name` and nothing else:
/// `name` itself, or with `*`, `?`, `[` and `]` in brackets (`t3x[*]`) when it has any; a first
/// `-` in brackets too (`[-]h`), so that the argument parser takes the value for a value, not
/// for a flag.
pub fn literal_pattern(name: &str) -> String {
    let escaped = if name.contains(['*', '?', '[']) {
        glob::Pattern::escape(name)
    } else {
        name.to_owned()
    };
    match escaped.strip_prefix('-') {
        Some(rest) => format!("[-]{rest}"),
        None => escaped,
    }
}

/// `name` as the value of `--iface`, `--drop-on` or `--exclude` in a command to be pasted: the
/// pattern of that name alone, as one shell word.
pub fn name_argument(name: &str) -> String {
    name_word(&literal_pattern(name))
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
        for (name, other) in [
            ("t*", "tx"),
            ("t?", "ta"),
            ("t[ab]", "ta"),
            ("[", "x"),
            ("-h", "xh"),
            ("-*", "-x"),
        ] {
            let pattern: NamePattern = literal_pattern(name).parse().expect("a valid pattern");
            assert!(pattern.matches(name), "{name}");
            assert!(!pattern.matches(other), "{name} matches {other}");
        }
        assert_eq!(literal_pattern("eth0"), "eth0");
        assert_eq!(name_argument("t*"), "'t[*]'");
        assert_eq!(name_argument("-h"), "'[-]h'");
    }

    #[test]
    fn nft_strings_name_the_bytes_and_refuse_a_quote() {
        assert_eq!(nft_string("eth0").as_deref(), Some(&b"\"eth0\""[..]));
        assert_eq!(nft_string("q\"x"), None);
        assert_eq!(
            nft_string(&name_of_bytes(b"n\xff")).as_deref(),
            Some(&b"\"n\xff\""[..])
        );
        // A last `*` is nft's wildcard: written `\*` it is the character.
        assert_eq!(nft_string("t*").as_deref(), Some(&b"\"t\\*\""[..]));
        assert_eq!(
            nft_string(&name_of_bytes(b"a\\b")).as_deref(),
            Some(&b"\"a\\b\""[..])
        );
    }

    /// Names as the kernel may give them, UTF-8 or not, with backslashes that look like the
    /// escapes of other names.
    const BYTES: [&[u8]; 8] = [
        b"n\xff",
        b"n\\xff",
        b"n\\\\xff",
        b"\xc3",
        b"\xc3\xa9t\xe9",
        b"a\\",
        b"\\x4",
        b"e\x1b\xff;id",
    ];

    #[test]
    fn names_keep_every_byte_and_stay_apart() {
        let texts: Vec<String> = BYTES.iter().map(|bytes| name_of_bytes(bytes)).collect();
        for (bytes, text) in BYTES.iter().zip(&texts) {
            assert_eq!(bytes_of_name(text), *bytes, "{text}");
            assert_eq!(
                texts.iter().filter(|other| *other == text).count(),
                1,
                "{text}"
            );
        }
        assert_eq!(name_of_bytes(b"eth0"), "eth0");
        assert_eq!(name_of_bytes(b"n\xff"), "n\\xff");
        assert_eq!(name_of_bytes(b"a\\b"), "a\\\\b");
        assert_eq!(name_of_bytes("\u{e9}t\u{e9}".as_bytes()), "\u{e9}t\u{e9}");
        // The command line's bytes make the same text: a pattern of them matches.
        let pattern = NamePattern::from_os(OsStr::from_bytes(b"n\xff")).expect("a name");
        assert!(pattern.matches(&texts[0]) && !pattern.matches(&texts[1]));
        let pattern = NamePattern::from_os(OsStr::from_bytes(b"n*")).expect("a pattern");
        assert!(pattern.matches(&texts[0]));
    }

    #[test]
    fn shell_words_of_bytes_mean_exactly_them_to_sh() {
        for bytes in BYTES {
            let word = name_word(&name_of_bytes(bytes));
            assert!(!word.contains(acts_on_terminal), "{word:?}");
            let output = Command::new("sh")
                .args(["-c", &format!("printf %s {word}")])
                .output()
                .expect("run sh");
            assert!(output.status.success(), "{word}: {output:?}");
            assert_eq!(output.stdout, bytes, "sh read {word} otherwise");
        }
        assert_eq!(
            name_word(&name_of_bytes(b"n\xff")),
            "'n'\"$(printf '\\377')\""
        );
    }
}
