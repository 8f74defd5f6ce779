//! Output: every command's report is printed either as one JSON document (`--json`) or as a human-readable table.

use std::io::Write;

use serde::Serialize;

use crate::error::AdminError;

/// A command's result: serialisable for `--json`, and renderable for people.
pub trait Report: Serialize {
    /// The human-readable rendering (tables and a summary line).
    fn human(&self) -> String;

    /// The exit code after printing the report: 0 unless the command partly failed.
    fn exit_code(&self) -> i32 {
        0
    }
}

/// Prints `report` on stdout in the requested form; returns its exit code.
pub fn emit<R: Report>(report: &R, json: bool) -> Result<i32, AdminError> {
    let text = if json {
        serde_json::to_string_pretty(report).map_err(|e| AdminError::Output(e.to_string()))?
    } else {
        report.human()
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", text.trim_end()).map_err(|e| AdminError::Output(e.to_string()))?;
    Ok(report.exit_code())
}

/// Prints a failure: the message on stderr always, and with `--json` also `{"error": {...}}` on stdout, so that a
/// script reading stdout gets one JSON document whatever happened.
pub fn emit_error(error: &AdminError, json: bool) {
    eprintln!("kcl-admin: {error}");
    if json {
        let document = serde_json::json!({
            "error": { "kind": error.kind(), "message": error.to_string(), "exit_code": error.exit_code() }
        });
        println!("{document}");
    }
}

/// A plain text table with left-aligned columns.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Self {
        Self { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Adds a row (one cell per header).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, columns padded to their widest cell.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let padded: Vec<String> = cells.zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            padded.join("  ").trim_end().to_owned()
        };
        let mut out = vec![line(&mut self.headers.iter().copied())];
        for row in &self.rows {
            out.push(line(&mut row.iter().map(String::as_str)));
        }
        out.join("\n")
    }
}

/// `-` for an absent value in a table cell.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A list as `a,b`, or `-` when empty.
pub fn list(items: &[String]) -> String {
    if items.is_empty() { "-".to_owned() } else { items.join(",") }
}

/// A checkpoint as kcl-core displays it: `sequence/sub-sequence`, or the bare sentinel.
pub fn position(checkpoint: &str, sub_sequence: u64) -> String {
    if checkpoint.starts_with(|c: char| c.is_ascii_digit()) {
        format!("{checkpoint}/{sub_sequence}")
    } else {
        checkpoint.to_owned()
    }
}
