//! Turning a byte span in a scenario file into what a person needs to fix it:
//! line, column and the key path (`steps[1].method`).

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{ScenarioError, SourceLine};

impl ScenarioError {
    /// The error at byte span `span` of `src`, the text of `file`.
    pub fn at(file: &std::path::Path, src: &str, span: Range<usize>, message: String) -> Self {
        let start = floor_char_boundary(src, span.start.min(src.len()));
        let (line, column) = line_col(src, start);
        let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
        let source_line = src[line_start..line_end].trim_end_matches('\r').to_string();
        // The span within the line, cut at its end (a span over several lines,
        // such as a whole table, is shown by its first line) and at least
        // one character wide, so the caret always shows.
        let from = start - line_start;
        let to = floor_char_boundary(
            &source_line,
            span.end.saturating_sub(line_start).min(source_line.len()),
        );
        let underline = if to > from {
            from..to
        } else {
            let next = source_line[from..].chars().next().map_or(0, char::len_utf8);
            from..from + next
        };
        ScenarioError {
            file: file.to_path_buf(),
            line,
            column,
            field: key_path_at(src, start)
                .filter(|p| !p.is_empty())
                .unwrap_or_default(),
            message,
            snippet: Box::new(SourceLine {
                text: source_line,
                underline,
            }),
        }
    }
}

/// The largest char boundary at or below `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The deepest key path whose key or value covers `offset`, found by
/// searching the whole document (array-of-tables spans do not always cover
/// their keys, so containers are not trusted to prune the search).
pub fn key_path_at(src: &str, offset: usize) -> Option<String> {
    let (doc, _) = DeTable::parse_recoverable(src);
    let mut best: Option<(usize, String)> = None;
    search_table(doc.get_ref(), offset, "", 0, &mut best);
    if best.is_none() {
        // A syntax error often lies past the broken value (an unclosed
        // string): name the key that starts the line instead.
        let line_start = src
            .get(..offset.min(src.len()))
            .and_then(|b| b.rfind('\n'))
            .map_or(0, |i| i + 1);
        let indent = src[line_start..].len() - src[line_start..].trim_start().len();
        if line_start + indent < offset {
            search_table(doc.get_ref(), line_start + indent, "", 0, &mut best);
        }
    }
    best.map(|(_, path)| path)
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

fn search_table(
    table: &DeTable<'_>,
    offset: usize,
    prefix: &str,
    depth: usize,
    best: &mut Option<(usize, String)>,
) {
    for (key, value) in table {
        // A key the parser could not read (`  = "x"`) is empty: the table
        // that holds it is the path, never `target.` or ``.
        let path = if key.get_ref().is_empty() {
            prefix.to_string()
        } else if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        if path.is_empty() {
            continue;
        }
        if covers(&key.span(), offset) || covers(&value.span(), offset) {
            consider(best, depth, &path);
        }
        search_value(value, offset, &path, depth + 1, best);
    }
}

fn search_value(
    value: &Spanned<DeValue<'_>>,
    offset: usize,
    path: &str,
    depth: usize,
    best: &mut Option<(usize, String)>,
) {
    match value.get_ref() {
        DeValue::Table(table) => search_table(table, offset, path, depth, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if covers(&item.span(), offset) {
                    consider(best, depth, &item_path);
                }
                search_value(item, offset, &item_path, depth + 1, best);
            }
        }
        _ => {}
    }
}

fn consider(best: &mut Option<(usize, String)>, depth: usize, path: &str) {
    if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
        *best = Some((depth, path.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 11), (2, 6));
    }

    #[test]
    fn a_key_path_is_never_empty() {
        for src in ["= \"x\"\n", "[target]\n  = \"x\"\n", "a = 1\n= 2\n"] {
            let at = src.rfind('=').unwrap();
            let path = key_path_at(src, at);
            assert!(
                path.as_deref()
                    .is_none_or(|p| !p.is_empty() && !p.ends_with('.')),
                "{src:?}: {path:?}"
            );
            let e = ScenarioError::at(
                std::path::Path::new("bad.toml"),
                src,
                at..at + 1,
                "m".into(),
            );
            assert!(!e.to_string().contains(": : "), "{e}");
            assert!(!e.field.ends_with('.'), "{e}");
        }
        let src = "[target]\n  = \"x\"\n";
        assert_eq!(
            key_path_at(src, src.find('=').unwrap()).as_deref(),
            Some("target")
        );
    }

    #[test]
    fn the_caret_is_under_the_column() {
        let src = "[load]\nduration = \"soon\"\n";
        let at = src.find("\"soon").unwrap();
        let e = ScenarioError::at(
            std::path::Path::new("s.toml"),
            src,
            at..at + 6,
            "bad".into(),
        );
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (2, 12, "load.duration")
        );
        let shown = e.render(false);
        assert!(shown.contains(" --> s.toml:2:12"), "{shown}");
        assert!(
            shown.contains("2 | duration = \"soon\"\n  |            ^^^^^^ in load.duration"),
            "{shown}"
        );
        // A span past the end of the file still shows a caret.
        let e = ScenarioError::at(std::path::Path::new("s.toml"), "a = ", 4..4, "eof".into());
        assert!(e.render(false).contains('^'));
    }

    #[test]
    fn finds_paths_in_arrays_of_tables() {
        let src = "[target]\nbase_url = \"x\"\n\n[[steps]]\nname = \"a\"\n\n[[steps]]\nname = \"b\"\nmethod = \"FETCH\"\n";
        let at = src.find("FETCH").unwrap();
        assert_eq!(key_path_at(src, at).as_deref(), Some("steps[1].method"));
        let at = src.find("base_url").unwrap();
        assert_eq!(key_path_at(src, at).as_deref(), Some("target.base_url"));
    }
}
