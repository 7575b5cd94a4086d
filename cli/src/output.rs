//! How answers are printed: an aligned table, CSV, or JSON with Macie's field names.

use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Csv,
}

pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
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
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, f) in widths.iter_mut().zip(row) {
            *w = (*w).max(f.chars().count());
        }
    }
    let line =
        |fields: Vec<&str>| fields.iter().zip(&widths).map(|(f, w)| format!("{f:<w$}")).collect::<Vec<_>>().join("  ");
    writeln!(out, "{}", line(header.to_vec()).trim_end())?;
    for row in rows {
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
}
