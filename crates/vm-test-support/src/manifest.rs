//! Parser for `guests/cases.txt`, the list of differential test cases.
//!
//! The format is documented at the top of `guests/cases.txt` and in
//! `guests/README.md`; in short, one case per line:
//!
//! ```text
//! NAME | BINARY | ARGS | STDIN | ENV | DIRS | TAGS
//! ```
//!
//! Fields are separated by `|`; within a field, words are separated by blanks
//! and a word may be double-quoted (`"a b"`, `""`, with `\" \\ \n \t \xHH`
//! escapes inside quotes).  `STDIN`, `DIRS` and `TAGS` use `-` for "none";
//! `ARGS` and `ENV` may be empty.  Lines that are blank or start with `#` are
//! ignored.
//!
//! This is the one implementation of the format: `cargo xtask guests` and the differential
//! tests use it.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context};

/// One test case from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Unique name; also the stem of the ground-truth files in `guests/expected/`.
    pub name: String,
    /// Guest ELF path relative to `guests/` (e.g. `bin/hello`).
    pub binary: String,
    /// `argv[1..]`.
    pub args: Vec<String>,
    /// File (relative to `guests/`) whose bytes are the guest's stdin; `None` = empty stdin.
    pub stdin: Option<String>,
    /// The complete environment of the guest, in order.
    pub env: Vec<(String, String)>,
    /// Directories (relative to `guests/`) the guest must be able to access on the host.
    pub dirs: Vec<String>,
    /// Free-form tags: `bench`, `fault`, ...
    pub tags: Vec<String>,
    /// 1-based line number in the manifest, for messages.
    pub line: usize,
}

impl Case {
    /// `argv[0]` and the path used to start the guest from the repository root:
    /// `guests/` followed by [`Case::binary`].
    pub fn argv0(&self) -> String {
        format!("guests/{}", self.binary)
    }

    /// Whether the case carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// Read and parse a manifest file.
pub fn load(path: &Path) -> anyhow::Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Parse manifest text.
pub fn parse(text: &str) -> anyhow::Result<Vec<Case>> {
    let mut cases = Vec::new();
    let mut names = HashSet::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = idx + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let case = parse_line(trimmed, line).with_context(|| format!("line {line}: {raw}"))?;
        if !names.insert(case.name.clone()) {
            bail!("line {line}: duplicate case name `{}`", case.name);
        }
        cases.push(case);
    }
    Ok(cases)
}

fn parse_line(text: &str, line: usize) -> anyhow::Result<Case> {
    let fields = split_fields(text)?;
    if fields.len() != 7 {
        bail!(
            "expected 7 `|`-separated fields (NAME | BINARY | ARGS | STDIN | ENV | DIRS | TAGS), found {}",
            fields.len()
        );
    }
    let one = |i: usize, what: &str| -> anyhow::Result<String> {
        match fields[i].as_slice() {
            [w] => Ok(w.clone()),
            _ => bail!("{what}: expected exactly one word, found {:?}", fields[i]),
        }
    };
    let dash_or_words = |i: usize| -> Vec<String> {
        match fields[i].as_slice() {
            [w] if w == "-" => Vec::new(),
            ws => ws.to_vec(),
        }
    };

    let name = one(0, "NAME")?;
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        bail!("NAME `{name}` must be non-empty and use only [A-Za-z0-9_.-]");
    }
    let binary = one(1, "BINARY")?;
    check_relative(&binary, "BINARY")?;
    let args = fields[2].clone();
    let stdin = match one(3, "STDIN")?.as_str() {
        "-" => None,
        p => {
            check_relative(p, "STDIN")?;
            Some(p.to_string())
        }
    };
    let mut env = Vec::new();
    for word in &fields[4] {
        let Some((k, v)) = word.split_once('=') else {
            bail!("ENV: `{word}` is not NAME=VALUE");
        };
        if k.is_empty() {
            bail!("ENV: empty variable name in `{word}`");
        }
        env.push((k.to_string(), v.to_string()));
    }
    let dirs = dash_or_words(5);
    for d in &dirs {
        check_relative(d, "DIRS")?;
    }
    let tags = dash_or_words(6);
    Ok(Case { name, binary, args, stdin, env, dirs, tags, line })
}

fn check_relative(p: &str, what: &str) -> anyhow::Result<()> {
    if p.is_empty() || p.starts_with('/') || p.split('/').any(|c| c == "..") {
        bail!("{what}: `{p}` must be a relative path inside guests/ without `..`");
    }
    Ok(())
}

/// Split a line into `|`-separated fields, each a list of words.
fn split_fields(text: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let mut fields = vec![Vec::new()];
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '|' => {
                chars.next();
                fields.push(Vec::new());
            }
            '"' => {
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => bail!("unterminated double quote"),
                        Some('"') => break,
                        Some('\\') => word.push(unescape(&mut chars)?),
                        Some(ch) => word.push(ch),
                    }
                }
                if let Some(&next) = chars.peek() {
                    if !matches!(next, ' ' | '\t' | '|') {
                        bail!("closing quote must be followed by a blank or `|`");
                    }
                }
                fields.last_mut().expect("non-empty").push(word);
            }
            _ => {
                let mut word = String::new();
                while let Some(&ch) = chars.peek() {
                    if matches!(ch, ' ' | '\t' | '|') {
                        break;
                    }
                    if ch == '"' || ch == '\\' {
                        bail!("`{ch}` is only allowed inside a double-quoted word");
                    }
                    word.push(ch);
                    chars.next();
                }
                fields.last_mut().expect("non-empty").push(word);
            }
        }
    }
    Ok(fields)
}

fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> anyhow::Result<char> {
    Ok(match chars.next() {
        Some('"') => '"',
        Some('\\') => '\\',
        Some('n') => '\n',
        Some('t') => '\t',
        Some('x') => {
            let hex: String = chars.by_ref().take(2).collect();
            let v = u8::from_str_radix(&hex, 16)
                .ok()
                .filter(|_| hex.len() == 2)
                .with_context(|| format!("bad \\x escape `\\x{hex}`"))?;
            if v >= 0x80 {
                bail!("\\x escapes must be ASCII (< 0x80); write UTF-8 text directly");
            }
            char::from(v)
        }
        Some(other) => bail!("unknown escape `\\{other}`"),
        None => bail!("backslash at end of line"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_line() {
        let cases = parse(
            "# comment\n\n\
             a_1 | bin/args_env | 3 \"two words\" \"\" \"q\\\"\\x01\" | data/input.txt | X=1 \"Y=a b\" Z= | data | fault bench\n\
             b | bin/hello | | - | | - | -\n",
        )
        .unwrap();
        assert_eq!(cases.len(), 2);
        let a = &cases[0];
        assert_eq!(a.name, "a_1");
        assert_eq!(a.argv0(), "guests/bin/args_env");
        assert_eq!(a.args, vec!["3", "two words", "", "q\"\u{1}"]);
        assert_eq!(a.stdin.as_deref(), Some("data/input.txt"));
        assert_eq!(
            a.env,
            vec![("X".into(), "1".into()), ("Y".into(), "a b".into()), ("Z".into(), "".into())]
        );
        assert_eq!(a.dirs, vec!["data"]);
        assert!(a.has_tag("fault") && a.has_tag("bench"));
        assert_eq!(a.line, 3);
        let b = &cases[1];
        assert!(b.args.is_empty() && b.env.is_empty() && b.dirs.is_empty() && b.tags.is_empty());
        assert_eq!(b.stdin, None);
    }

    #[test]
    fn rejects_bad_lines() {
        for bad in [
            "a | bin/x | | - | | -",                                // 6 fields
            "a b | bin/x | | - | | - | -",                          // two names
            "a | /bin/x | | - | | - | -",                           // absolute
            "a | bin/x | \"open | - | | - | -",                     // unterminated
            "a | bin/x | | - | NOEQUALS | - | -",                   // env without =
            "a | ../x | | - | | - | -",                             // escapes guests/
            "a | bin/x | x\"y | - | | - | -",                       // quote inside bare word
            "a | bin/x | | - | | - | -\na | bin/y | | - | | - | -", // duplicate
        ] {
            assert!(parse(bad).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn the_real_manifest_parses() {
        let path = crate::repo_root().join("guests/cases.txt");
        let cases = load(&path).unwrap();
        assert!(cases.len() > 20);
        for c in &cases {
            assert!(
                crate::repo_root().join("guests").join(&c.binary).is_file(),
                "{}: missing {}",
                c.name,
                c.binary
            );
        }
    }
}
