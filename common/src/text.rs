//! Text written by others (bucket names, tags, event actors, error messages, agent versions),
//! made safe to show: control characters and bidirectional overrides escaped, so that nobody
//! can forge a log line or repaint a terminal, and the length bounded, so that one 200 KB name
//! does not flood a log.

use std::fmt::{self, Display, Write};

/// The most characters of one value a log line shows: S3's longest names (a 1,024-byte key, a
/// 256-byte tag value) matter in full far less than a log that stays readable.
pub const MAX_LOG_CHARS: usize = 256;

/// Is `c` one that must not reach a log or a terminal as it is: a control character (newline,
/// carriage return, escape, …) or one that reorders or hides text (bidirectional overrides,
/// zero-width marks)?
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// `text` with every [`is_unsafe`] character escaped (`\n`, `\u{1b}`), cut after `max_chars`
/// characters with a note of how many bytes were left out.
pub fn escape(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 2));
    write_escaped(&mut out, text, max_chars).expect("writing to a String");
    out
}

fn write_escaped(out: &mut impl Write, text: &str, max_chars: usize) -> fmt::Result {
    for (shown, (at, c)) in text.char_indices().enumerate() {
        if shown == max_chars {
            return write!(out, "…(+{} bytes)", text.len() - at);
        }
        if is_unsafe(c) {
            write!(out, "{}", c.escape_default())?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

/// A value written by others, for a log line: escaped and bounded to [`MAX_LOG_CHARS`] when
/// displayed, without allocating.
pub fn for_log(text: &str) -> ForLog<'_> {
    ForLog(text)
}

/// See [`for_log`].
#[derive(Debug, Clone, Copy)]
pub struct ForLog<'a>(&'a str);

impl Display for ForLog<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, MAX_LOG_CHARS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_overrides_are_escaped() {
        let forged = "bucket\n2026-01-01T00:00:00Z INFO estate: all clear\r\u{1b}[2J\u{202E}txt.exe\u{7f}";
        let shown = for_log(forged).to_string();
        assert!(!shown.chars().any(is_unsafe), "{shown}");
        assert_eq!(shown, "bucket\\n2026-01-01T00:00:00Z INFO estate: all clear\\r\\u{1b}[2J\\u{202e}txt.exe\\u{7f}");
        assert_eq!(for_log("my-bucket.example").to_string(), "my-bucket.example");
        assert_eq!(for_log("tag=värde 值").to_string(), "tag=värde 值", "printable Unicode stays");
    }

    #[test]
    fn long_values_are_bounded_and_say_so() {
        let name = "a".repeat(200_000);
        let shown = for_log(&name).to_string();
        assert_eq!(shown, format!("{}…(+{} bytes)", "a".repeat(MAX_LOG_CHARS), 200_000 - MAX_LOG_CHARS));
        let exact = "b".repeat(MAX_LOG_CHARS);
        assert_eq!(for_log(&exact).to_string(), exact);
        // Bounded in characters, never cut inside one.
        assert_eq!(escape("ééé", 2), "éé…(+2 bytes)");
        assert_eq!(escape("\n\n\n", 2), "\\n\\n…(+1 bytes)");
    }
}
