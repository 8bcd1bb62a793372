//! How answers are printed: `-o table` (aligned columns for people, the default), `-o json`
//! and `-o yaml` (the API's objects, whole, for scripts).

use serde::Serialize;

use crate::client::Error;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns (events: one line each).
    #[default]
    Table,
    /// JSON (events: one object per line).
    Json,
    /// YAML (events: one document each).
    Yaml,
}

/// Rows under a header, printed with aligned columns.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text: columns two spaces apart, no trailing spaces; control characters
    /// of the cells (a hostile session name cannot move the cursor) shown as spaces.
    pub fn render(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        };
        let all: Vec<Vec<String>> =
            std::iter::once(self.header.iter().map(|h| (*h).to_owned()).collect())
                .chain(
                    self.rows
                        .iter()
                        .map(|r| r.iter().map(|c| clean(c)).collect()),
                )
                .collect();
        let columns = self.header.len();
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                all.iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &all {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Prints `value` as `format` asks: the table `table` makes, or the whole value.
pub fn print<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce(&T) -> Table,
) -> Result<(), Error> {
    let text = match format {
        Format::Table => table(value).render(),
        Format::Json => json(value)? + "\n",
        Format::Yaml => yaml(value)?,
    };
    write(&text)
}

/// Prints what was made as `format` asks: in table output its name alone, one line a script
/// can take (`S=$(ambient sessions create …)`, as `kubectl create -o name` prints); with
/// `-o json` or `-o yaml`, the whole `value`.
pub fn print_name<T: Serialize>(format: Format, value: &T, name: &str) -> Result<(), Error> {
    match format {
        Format::Table => write(&format!("{name}\n")),
        Format::Json => write(&(json(value)? + "\n")),
        Format::Yaml => write(&yaml(value)?),
    }
}

/// `value` as one line of JSON.
pub fn json<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Local(e.to_string()))
}

/// `value` as a YAML document.
pub fn yaml<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_yaml::to_string(value).map_err(|e| Error::Local(e.to_string()))
}

/// Writes to standard output; a closed pipe (`| head`) ends the command quietly.
pub fn write(text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Error::Local(format!("cannot write the output: {e}"))),
    }
}

/// A time in milliseconds since the epoch, as RFC 3339 (seconds).
pub fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) of the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A running session's agent, in a word: `working`, `waiting` (it answered; your turn),
/// `asking` (it asked you something), or nothing.
pub fn agent(status: Option<model::session::AgentStatus>) -> &'static str {
    match status {
        Some(model::session::AgentStatus::Working) => "working",
        Some(model::session::AgentStatus::Idle) => "waiting",
        Some(model::session::AgentStatus::WaitingInput) => "asking",
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_clean_their_cells() {
        let mut t = Table::new(&["NAME", "PHASE"]);
        t.row(vec!["a".into(), "Running".into()]);
        t.row(vec!["long-name\x1b[2J".into(), "Completed".into()]);
        assert_eq!(
            t.render(),
            "NAME           PHASE\na              Running\nlong-name [2J  Completed\n"
        );
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_795_000_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(time(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
