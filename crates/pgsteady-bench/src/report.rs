//! Medians and markdown tables.

use std::time::Duration;

/// The median of `values` (the mean of the two middle ones for an even count); `None` when
/// empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if !sorted.len().is_multiple_of(2) {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// The median of durations in milliseconds, where `None` (never happened, e.g. never
/// recovered) counts as longer than any value; `None` when the median itself is one.
pub fn median_ms(values: &[Option<Duration>]) -> Option<f64> {
    let mut ms: Vec<f64> = values
        .iter()
        .map(|v| v.map_or(f64::INFINITY, |d| d.as_secs_f64() * 1000.0))
        .collect();
    ms.sort_by(f64::total_cmp);
    median(&ms).filter(|m| m.is_finite())
}

/// Milliseconds for a table: `12`, `3.4`, `0.42`, or `-` for none.
pub fn fmt_ms(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(ms) if ms >= 100.0 => thousands(ms.round() as u64),
        Some(ms) if ms >= 10.0 => format!("{ms:.0}"),
        Some(ms) if ms >= 1.0 => format!("{ms:.1}"),
        Some(ms) => format!("{ms:.2}"),
    }
}

/// A count with thousands separators: `7,270`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A markdown table. Columns whose cells are all numbers (digits, `,`, `.`, `x`, `-`) are
/// right-aligned, the others left-aligned.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are left empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let columns = self.header.len();
        let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| cell(r, i).chars().count())
                    .chain([self.header[i].chars().count(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let numeric: Vec<bool> = (0..columns)
            .map(|i| {
                self.rows.iter().all(|r| {
                    cell(r, i)
                        .chars()
                        .all(|c| c.is_ascii_digit() || ",.x-".contains(c))
                })
            })
            .collect();
        let line = |f: &mut std::fmt::Formatter<'_>, cells: &[String]| {
            write!(f, "|")?;
            for (i, width) in widths.iter().enumerate() {
                let text = cell(cells, i);
                let pad = " ".repeat(width - text.chars().count());
                if numeric[i] {
                    write!(f, " {pad}{text} |")?;
                } else {
                    write!(f, " {text}{pad} |")?;
                }
            }
            writeln!(f)
        };
        line(f, &self.header)?;
        write!(f, "|")?;
        for (i, width) in widths.iter().enumerate() {
            if numeric[i] {
                write!(f, "{}:|", "-".repeat(width + 1))?;
            } else {
                write!(f, "{}|", "-".repeat(width + 2))?;
            }
        }
        writeln!(f)?;
        for row in &self.rows {
            line(f, row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn never_counts_as_longest() {
        assert_eq!(median_ms(&[ms(10), None, ms(30)]), Some(30.0));
        assert_eq!(median_ms(&[ms(10), None, None]), None);
        assert_eq!(median_ms(&[ms(10), ms(20), None, None]), None);
        assert_eq!(median_ms(&[ms(10), ms(20), ms(40), None]), Some(30.0));
    }

    #[test]
    fn milliseconds_and_counts_read_well() {
        assert_eq!(fmt_ms(Some(1380.4)), "1,380");
        assert_eq!(fmt_ms(Some(45.6)), "46");
        assert_eq!(fmt_ms(Some(3.44)), "3.4");
        assert_eq!(fmt_ms(Some(0.421)), "0.42");
        assert_eq!(fmt_ms(None), "-");
        assert_eq!(thousands(7270), "7,270");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(98), "98");
    }

    #[test]
    fn tables_align_numbers_right() {
        let mut t = Table::new(&["client", "errors"]);
        t.row(vec!["bb8".into(), "1,061".into()]);
        t.row(vec!["sqlx".into(), "2".into()]);
        assert_eq!(
            t.to_string(),
            "| client | errors |\n\
             |--------|-------:|\n\
             | bb8    |  1,061 |\n\
             | sqlx   |      2 |\n"
        );
    }
}
