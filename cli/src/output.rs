//! How answers are printed: an aligned table, CSV, or JSON with Macie's field names (and, as
//! in Macie's API, without the fields that have no value).
//!
//! Much of what is printed was written by others (bucket names, tags, event actors, error
//! messages, agent versions). In a table every cell is escaped (control characters, ANSI
//! escapes, newlines) and bounded, so that a cell can neither repaint the terminal nor forge
//! rows; in CSV a cell that a spreadsheet would run as a formula is defused. JSON escapes
//! control characters by itself.

use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Csv,
}

/// Prints `value` as JSON, leaving out fields without a value as Macie's API does.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(value)?;
    estate_common::macie::without_nulls(&mut value);
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// The most characters one table cell shows (a 1,024-byte object key or a 200 KB hostile
/// name would make every row of the table that wide); the rest is counted, not shown. CSV and
/// JSON carry the whole value.
pub const MAX_TABLE_CELL_CHARS: usize = 200;

/// One table cell: control characters escaped, at most [`MAX_TABLE_CELL_CHARS`] characters.
pub fn table_cell(text: &str) -> String {
    estate_common::text::escape(text, MAX_TABLE_CELL_CHARS)
}

/// Does a spreadsheet read a cell starting like this as a formula (OWASP, "CSV Injection")?
fn looks_like_formula(text: &str) -> bool {
    // A number, or the `-` of an absent value, is data whatever its sign.
    let number = text == "-" || text.parse::<f64>().is_ok_and(f64::is_finite);
    text.starts_with(['=', '+', '-', '@', '\t', '\r']) && !number
}

/// One CSV cell: a would-be formula gets a leading `'`, and a cell with a separator, quote or
/// line break is quoted.
pub fn csv_field(text: &str) -> String {
    let text = if looks_like_formula(text) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Prints rows as an aligned table or as CSV.
pub fn print_rows(output: Output, header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if output == Output::Csv {
        writeln!(out, "{}", header.join(","))?;
        for row in rows {
            writeln!(out, "{}", row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","))?;
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(|f| table_cell(f)).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, f) in widths.iter_mut().zip(row) {
            *w = (*w).max(f.chars().count());
        }
    }
    let line =
        |fields: Vec<&str>| fields.iter().zip(&widths).map(|(f, w)| format!("{f:<w$}")).collect::<Vec<_>>().join("  ");
    writeln!(out, "{}", line(header.to_vec()).trim_end())?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()).trim_end())?;
    }
    Ok(())
}

/// Prints a JSON document as `field  value` rows (`a.b[0].c`), for `--output table`.
pub fn print_flattened(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    flatten("", value, &mut rows);
    print_rows(Output::Table, &["field", "value"], &rows)
}

/// An optional value, `-` when absent.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `a.b.c = value` rows of a JSON document.
fn flatten(prefix: &str, value: &serde_json::Value, rows: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, rows);
            }
        }
        serde_json::Value::Array(items) if items.iter().all(|i| !i.is_object()) => {
            let text =
                items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect::<Vec<_>>();
            rows.push(vec![prefix.to_owned(), text.join(", ")]);
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item, rows);
            }
        }
        serde_json::Value::Null => rows.push(vec![prefix.to_owned(), "-".to_owned()]),
        serde_json::Value::String(s) => rows.push(vec![prefix.to_owned(), s.clone()]),
        other => rows.push(vec![prefix.to_owned(), other.to_string()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattening_names_every_leaf() {
        let value = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": [{"e": null}], "f": "x,y"});
        let mut rows = Vec::new();
        flatten("", &value, &mut rows);
        let pairs: Vec<(String, String)> = rows.into_iter().map(|r| (r[0].clone(), r[1].clone())).collect();
        assert_eq!(
            pairs,
            vec![
                ("a.b".into(), "1".into()),
                ("a.c".into(), "1, 2".into()),
                ("d[0].e".into(), "-".into()),
                ("f".into(), "x,y".into())
            ]
        );
        assert_eq!(csv_field("x,\"y\""), "\"x,\"\"y\"\"\"");
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_defused() {
        for (cell, shown) in [
            ("=HYPERLINK(\"http://evil\")", "\"'=HYPERLINK(\"\"http://evil\"\")\""),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "\"'\r=1\""),
            ("line\nbreak", "\"line\nbreak\""),
            // Data stays data.
            ("-", "-"),
            ("-12.5", "-12.5"),
            ("my-bucket", "my-bucket"),
            ("a=b", "a=b"),
        ] {
            assert_eq!(csv_field(cell), shown, "{cell:?}");
        }
    }

    #[test]
    fn table_cells_cannot_repaint_the_terminal_or_forge_rows() {
        let cell = table_cell("evil\u{1b}[31mred\u{1b}[0m\nfake-bucket  PUBLIC\r");
        assert!(!cell.chars().any(char::is_control), "{cell:?}");
        assert_eq!(cell, "evil\\u{1b}[31mred\\u{1b}[0m\\nfake-bucket  PUBLIC\\r");
        let long = table_cell(&"x".repeat(100_000));
        assert!(long.starts_with(&"x".repeat(MAX_TABLE_CELL_CHARS)) && long.ends_with("…(+99800 bytes)"), "{long}");
        assert_eq!(long.chars().count(), MAX_TABLE_CELL_CHARS + "…(+99800 bytes)".chars().count());
    }
}
