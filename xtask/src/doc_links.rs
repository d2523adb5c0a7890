//! The links of README.md and docs/*.md: every relative link names a file of the repository,
//! and every `#anchor` a heading of the Markdown page it points into, as GitHub makes anchors of
//! headings. Run by `cargo xtask lint` and by this module's test.

use std::{
    collections::HashMap,
    fmt, fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// A link that leads nowhere: where it is, what it says, and why it leads nowhere.
#[derive(Debug)]
pub(crate) struct BrokenLink {
    pub(crate) page: PathBuf,
    pub(crate) line: usize,
    pub(crate) target: String,
    pub(crate) why: String,
}

impl fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: ({}): {}",
            self.page.display(),
            self.line,
            self.target,
            self.why
        )
    }
}

/// The pages whose links are checked: README.md and every docs/*.md, relative to `root`.
pub(crate) fn pages(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut pages = vec![PathBuf::from("README.md")];
    let docs = root.join("docs");
    let mut in_docs = Vec::new();
    for entry in fs::read_dir(&docs).with_context(|| format!("cannot list {}", docs.display()))? {
        let name = entry?.file_name();
        if Path::new(&name).extension().is_some_and(|ext| ext == "md") {
            in_docs.push(Path::new("docs").join(name));
        }
    }
    in_docs.sort();
    pages.extend(in_docs);
    Ok(pages)
}

/// Every broken relative link of `pages` (paths relative to `root`), in page and line order.
pub(crate) fn broken_links(root: &Path, pages: &[PathBuf]) -> anyhow::Result<Vec<BrokenLink>> {
    let mut anchors: HashMap<PathBuf, Vec<String>> = HashMap::new();
    let mut broken = Vec::new();
    for page in pages {
        let text = read(&root.join(page))?;
        for (line, target) in links(&text) {
            if is_external(&target) {
                continue;
            }
            let (path, anchor) = target
                .split_once('#')
                .map_or((target.as_str(), None), |(path, anchor)| {
                    (path, Some(anchor))
                });
            let file = if path.is_empty() {
                root.join(page)
            } else {
                root.join(page)
                    .parent()
                    .expect("a page's folder")
                    .join(path)
            };
            let mut report = |why: String| {
                broken.push(BrokenLink {
                    page: page.clone(),
                    line,
                    target: target.clone(),
                    why,
                });
            };
            if !file.exists() {
                report(format!("no file {}", file.display()));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if file.extension().is_none_or(|ext| ext != "md") {
                report(format!(
                    "#{anchor} points into {}, which is not Markdown",
                    file.display()
                ));
                continue;
            }
            let file = file.canonicalize()?;
            if !anchors.contains_key(&file) {
                anchors.insert(file.clone(), heading_anchors(&read(&file)?));
            }
            if !anchors[&file].iter().any(|known| known == anchor) {
                report(format!(
                    "no heading of {} has the anchor #{anchor}",
                    file.display()
                ));
            }
        }
    }
    Ok(broken)
}

fn read(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:")
}

/// The lines of `text` outside fenced code blocks, numbered from 1.
fn lines_outside_fences(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut fenced = false;
    text.lines().enumerate().filter_map(move |(index, line)| {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            return None;
        }
        (!fenced).then_some((index + 1, line))
    })
}

/// The targets of the inline links (`[text](target)`, images too) of `text`, with their line
/// numbers; code, fenced or in backticks, holds none.
fn links(text: &str) -> Vec<(usize, String)> {
    // Code spans may run over a line break, so they are taken out paragraph by paragraph.
    let mut found = Vec::new();
    let mut paragraph: Vec<(usize, &str)> = Vec::new();
    let mut flush = |paragraph: &mut Vec<(usize, &str)>| {
        let joined: Vec<&str> = paragraph.iter().map(|(_, line)| *line).collect();
        let prose = without_code_spans(&joined.join("\n"));
        let mut rest = prose.as_str();
        let mut consumed = 0;
        while let Some(at) = rest.find("](") {
            let start = at + 2;
            let end = rest[start..]
                .find(|c: char| c == ')' || c.is_whitespace())
                .map_or(rest.len(), |end| start + end);
            let line = paragraph[0].0 + prose[..consumed + at].matches('\n').count();
            found.push((line, rest[start..end].to_owned()));
            consumed += end;
            rest = &rest[end..];
        }
        paragraph.clear();
    };
    for (number, line) in lines_outside_fences(text) {
        if line.trim().is_empty() {
            flush(&mut paragraph);
        } else {
            paragraph.push((number, line));
        }
    }
    flush(&mut paragraph);
    found
}

/// `text` with every code span (a run of backticks up to the next run as long) blanked, line
/// breaks kept; an unclosed run is literal text.
fn without_code_spans(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('`') {
        out.push_str(&rest[..open]);
        let ticks = rest[open..].len() - rest[open..].trim_start_matches('`').len();
        let fence = &rest[open..open + ticks];
        let after = &rest[open + ticks..];
        match after.find(fence) {
            Some(close) => {
                out.extend(after[..close].chars().filter(|&c| c == '\n'));
                rest = &after[close + ticks..];
            }
            None => {
                out.push_str(fence);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The anchors GitHub gives the headings of `text`, in order: the heading's text without its
/// Markdown, lowercased, spaces turned into `-`, punctuation other than `-` and `_` removed; a
/// repeated anchor gets `-1`, `-2`, … on its second, third, … heading.
pub(crate) fn heading_anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = Vec::new();
    for (_, line) in lines_outside_fences(text) {
        let hashes = line.len() - line.trim_start_matches('#').len();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug = slug(line[hashes..].trim().trim_end_matches('#').trim());
        let count = seen.entry(slug.clone()).or_insert(0);
        anchors.push(if *count == 0 {
            slug
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    anchors
}

fn slug(heading: &str) -> String {
    plain_text(heading)
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// A heading's text as GitHub renders it, for the few forms headings here use: code spans and
/// emphasis lose their marks, a link keeps its text.
fn plain_text(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|close| open + close) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|end| close + end) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.replace(['`', '*'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_relative_link_of_the_readme_and_docs_resolves() {
        let root = crate::workspace_root();
        let pages = pages(&root).expect("the pages");
        assert!(pages.len() > 1, "no docs/*.md found: {pages:?}");
        let broken = broken_links(&root, &pages).expect("the pages read");
        let list: Vec<String> = broken.iter().map(ToString::to_string).collect();
        assert!(broken.is_empty(), "broken links:\n{}", list.join("\n"));
    }

    #[test]
    fn anchors_follow_githubs_rules() {
        let page = "# localnet-probe\n## `localnet-probe run`\n\
                    ## A standing filter: `run --pin`, `status`, `detach`\n\
                    ### When route_localnet changes\n## Tests\n## Tests\n## Tests\n\
                    ```sh\n# a comment, not a heading\n```\n#### Without tcx: a clsact filter\n";
        assert_eq!(
            heading_anchors(page),
            [
                "localnet-probe",
                "localnet-probe-run",
                "a-standing-filter-run---pin-status-detach",
                "when-route_localnet-changes",
                "tests",
                "tests-1",
                "tests-2",
                "without-tcx-a-clsact-filter",
            ]
        );
    }

    #[test]
    fn links_in_code_are_not_links() {
        let text = "See [a](a.md) and `[b](b.md)`, a span\nover `two [c](c.md)\nlines`.\n\n\
                    ```\n[d](d.md)\n```\n[e](e.md#x) [f](https://example.org/f)\n";
        assert_eq!(
            links(text),
            [
                (1, "a.md".to_owned()),
                (8, "e.md#x".to_owned()),
                (8, "https://example.org/f".to_owned())
            ]
        );
    }

    #[test]
    fn a_missing_file_and_a_missing_anchor_are_reported() {
        let root = std::env::temp_dir().join(format!("xtask-doc-links-{}", std::process::id()));
        fs::create_dir_all(root.join("docs")).expect("a temporary folder");
        fs::write(
            root.join("README.md"),
            "# Top\n[ok](docs/a.md#part-two) [self](#top)\n[gone](docs/b.md)\n\
             [no anchor](docs/a.md#part-three)\n",
        )
        .expect("README.md");
        fs::write(
            root.join("docs/a.md"),
            "# A\n## Part two\n[up](../README.md#top)\n",
        )
        .expect("docs/a.md");
        let broken = broken_links(&root, &pages(&root).expect("the pages"));
        fs::remove_dir_all(&root).expect("the temporary folder removed");
        let broken: Vec<(usize, String)> = broken
            .expect("the pages read")
            .into_iter()
            .map(|link| (link.line, link.target))
            .collect();
        assert_eq!(
            broken,
            [
                (3, "docs/b.md".to_owned()),
                (4, "docs/a.md#part-three".to_owned())
            ]
        );
    }
}
