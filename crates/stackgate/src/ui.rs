//! Output for people, on stderr: status lines (timestamped when stderr is not a terminal),
//! tables, durations. Output for programs (`--json`) goes to stdout, through [`print_json`] only:
//! one object per command with a top-level boolean `passed`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether this process printed its `--json` object.
static JSON_PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints the command's one JSON object on stdout, with a top-level boolean `passed` (added when
/// `value` has none; a value that is not an object is put under `result`).
pub fn print_json(value: serde_json::Value, passed: bool) {
    let mut object = match value {
        serde_json::Value::Object(object) => object,
        other => serde_json::Map::from_iter([("result".to_owned(), other)]),
    };
    object
        .entry("passed")
        .or_insert(serde_json::Value::Bool(passed));
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(object))
        .unwrap_or_else(|e| format!("{{\"passed\": false, \"error\": \"cannot render: {e}\"}}"));
    println!("{text}");
    JSON_PRINTED.store(true, Ordering::SeqCst);
}

/// Whether [`print_json`] printed already (the error of a command that printed nothing under
/// `--json` is printed as `{"passed": false, "error": ...}`).
pub fn json_printed() -> bool {
    JSON_PRINTED.load(Ordering::SeqCst)
}

/// Whether stderr is a terminal (progress may redraw) or a log (plain timestamped lines).
pub fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// One status line for people.
pub fn say(message: impl std::fmt::Display) {
    if interactive() {
        eprintln!("{message}");
    } else {
        eprintln!("[{}] {message}", clock());
    }
}

/// Wall-clock time of day, UTC, `HH:MM:SS.mmm`.
pub fn clock() -> String {
    let ms = crate::clock::unix_ms();
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

/// `0.42s`, `12.3s`, `2m05s`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.2}s")
    } else if secs < 120.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// Renders rows as a left-aligned table with a header line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let render = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let last = i + 1 == cells.len();
            line.push_str(cell);
            if !last {
                line.push_str(&" ".repeat(widths[i].saturating_sub(cell.chars().count()) + 2));
            }
        }
        line.trim_end().to_owned()
    };
    let mut out = render(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&render(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let text = table(
            &["check", "status"],
            &[
                vec!["memory".into(), "ok".into()],
                vec!["cpu load".into(), "warn".into()],
            ],
        );
        assert_eq!(text, "check     status\nmemory    ok\ncpu load  warn\n");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_millis(420)), "0.42s");
        assert_eq!(duration(Duration::from_secs(125)), "2m05s");
    }
}
