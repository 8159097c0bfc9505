//! Plain-text tables for a terminal, aligned by display width so that Chinese titles (two
//! columns per character) line up with ASCII ids.
//!
//! Text from other departments (titles, names, reasons) is shown with its control characters
//! replaced: a document must not be able to send escape sequences to the clerk's terminal.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Columns between two table columns.
const GAP: &str = "  ";

/// A table: a header row and data rows, rendered with every column as wide as its widest cell.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub(crate) fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row; its cells are made printable.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| printable(c)).collect());
    }

    /// The table as lines of text, each ending with a newline.
    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.width())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str(GAP);
                }
                line.push_str(&pad(cell, widths[i]));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `s` followed by spaces up to `width` display columns (nothing added if it is already wider).
pub(crate) fn pad(s: &str, width: usize) -> String {
    let fill = width.saturating_sub(s.width());
    format!("{s}{}", " ".repeat(fill))
}

/// `s` cut to at most `max` display columns, ending with "…" when something was cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.width() <= max {
        return s.to_owned();
    }
    let budget = max.saturating_sub(1);
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > budget {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// `s` with control characters (escape sequences, newlines) replaced by U+FFFD.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// A cell for an optional value: the value, or "-" when it is empty.
pub(crate) fn or_dash(s: String) -> String {
    if s.is_empty() { "-".to_owned() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_text_pads_by_display_width() {
        assert_eq!(pad("通知", 6), "通知  ");
        assert_eq!(pad("ab", 6), "ab    ");
        assert_eq!(pad("关于开展检查的通知", 4), "关于开展检查的通知");
    }

    #[test]
    fn columns_line_up_with_mixed_scripts() {
        let mut t = Table::new(&["ID", "TITLE", "STATE"]);
        t.row(vec!["a".into(), "关于开展检查的通知".into(), "new".into()]);
        t.row(vec!["bb".into(), "Budget".into(), "confirmed".into()]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        let state_col = |l: &str| l[..l.rfind(' ').unwrap()].width();
        assert_eq!(state_col(lines[0]), state_col(lines[1]));
        assert_eq!(state_col(lines[1]), state_col(lines[2]));
        assert_eq!(lines[1], "a   关于开展检查的通知  new");
    }

    #[test]
    fn long_titles_are_cut_to_the_budget() {
        let title = "关于进一步加强和改进新时代机关公文处理工作的若干意见的通知";
        let cut = truncate(title, 40);
        assert!(cut.width() <= 40, "{cut}");
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", 40), "short");
    }

    #[test]
    fn escape_sequences_do_not_reach_the_terminal() {
        assert_eq!(printable("a\u{1b}[2Jb\nc"), "a\u{FFFD}[2Jb\u{FFFD}c");
        let mut t = Table::new(&["T"]);
        t.row(vec!["\u{1b}]0;x\u{7}".into()]);
        assert!(!t.render().contains('\u{1b}'));
    }
}
