//! The `--chart` picture of a soak: calls per second by outcome (ok, not ok, unknown), the
//! faults as shaded bands labelled by name, and each commit resolution as a mark by its
//! verdict. Drawn like the drill's chart with plotters' SVG backend (text as `<text>`
//! elements, so no font library is needed).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use plotters::prelude::*;

use super::history::{Line, Outcome, Phase, PoolLine};

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 700;
const OK_COLOR: RGBColor = RGBColor(46, 139, 87);
const BAD_COLOR: RGBColor = RGBColor(214, 39, 40);
const UNKNOWN_COLOR: RGBColor = RGBColor(148, 0, 211);
const FAULT_COLOR: RGBColor = RGBColor(255, 170, 60);
const ABORTED_COLOR: RGBColor = RGBColor(90, 90, 90);

/// How many bins the run is cut into, at most (one per second below that).
const MAX_BINS: usize = 600;

/// What the chart shows, read from a history.
#[derive(Debug, Default, PartialEq)]
struct Series {
    /// Seconds per bin.
    bin: f64,
    ok: Vec<u64>,
    bad: Vec<u64>,
    unknown: Vec<u64>,
    /// (fault, start s, end s).
    faults: Vec<(String, f64, f64)>,
    /// (time s, verdict).
    resolutions: Vec<(f64, String)>,
    /// The run's length in seconds.
    span: f64,
}

fn series(lines: &[Line]) -> Series {
    // From the first call: the topology's start-up before it is not part of the run.
    let begin = lines
        .iter()
        .find_map(|l| match l {
            Line::Invoke { t, .. } => Some(*t),
            _ => None,
        })
        .unwrap_or(0.0);
    let end = lines
        .iter()
        .filter_map(|l| match l {
            Line::Invoke { t, .. }
            | Line::Complete { t, .. }
            | Line::Nemesis { t, .. }
            | Line::Pool { t, .. } => Some(*t),
            _ => None,
        })
        .fold(begin, f64::max);
    let secs = |t: f64| ((t - begin) / 1000.0).max(0.0);
    let span = secs(end).max(1.0);
    let bins = (span.ceil() as usize).clamp(1, MAX_BINS);
    let bin = span / bins as f64;
    let mut s = Series {
        bin,
        ok: vec![0; bins],
        bad: vec![0; bins],
        unknown: vec![0; bins],
        span,
        ..Series::default()
    };
    let index = |t: f64| ((secs(t) / bin) as usize).min(bins - 1);
    // Starts not yet ended, per fault name, in order.
    let mut open: BTreeMap<&str, VecDeque<f64>> = BTreeMap::new();
    for line in lines {
        match line {
            Line::Complete { t, result, .. } => {
                let i = index(*t);
                match result {
                    Outcome::Ok => s.ok[i] += 1,
                    Outcome::Unknown => s.unknown[i] += 1,
                    _ => s.bad[i] += 1,
                }
            }
            Line::Nemesis {
                t, fault, phase, ..
            } => match phase {
                Phase::Start => open.entry(fault).or_default().push_back(secs(*t)),
                Phase::End => {
                    if let Some(start) = open.get_mut(fault.as_str()).and_then(|q| q.pop_front()) {
                        s.faults.push((fault.clone(), start, secs(*t)));
                    }
                }
            },
            Line::Pool {
                t,
                event: PoolLine::Resolved { verdict, .. },
                ..
            } => s.resolutions.push((secs(*t), verdict.clone())),
            _ => {}
        }
    }
    // A fault still open when the history ends lasts to its end.
    for (fault, starts) in open {
        for start in starts {
            s.faults.push((fault.to_owned(), start, span));
        }
    }
    s.faults
        .sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
    s
}

/// Writes the chart of `lines` to `path` as SVG.
pub(crate) fn write(path: &Path, title: &str, lines: &[Line]) -> Result<(), String> {
    let mut out = String::new();
    draw(&series(lines), title, &mut out).map_err(|e| format!("cannot draw the chart: {e}"))?;
    std::fs::write(path, out).map_err(|e| format!("--chart {}: {e}", path.display()))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(s: &Series, title: &str, out: &mut String) -> DrawResult {
    let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let peak =
        s.ok.iter()
            .chain(&s.bad)
            .chain(&s.unknown)
            .copied()
            .max()
            .unwrap_or(0)
            .max(1) as f64
            / s.bin;
    // Room above the busiest second for the fault labels and the resolution marks.
    let top = peak * 1.35;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..s.span, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first call")
        .y_desc("calls completed per second")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, (fault, start, end)) in s.faults.iter().enumerate() {
        let end = end.max(start + s.bin * 0.3);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(*start, 0.0), (end, peak * 1.12)],
            FAULT_COLOR.mix(0.25).filled(),
        )))?;
        // Labels alternate between two rows so neighbours overlap less.
        let row = if i % 2 == 0 { 1.16 } else { 1.12 };
        chart.draw_series(std::iter::once(Text::new(
            fault.clone(),
            (*start, peak * row + peak * 0.04),
            ("sans-serif", 10).into_font().color(&RGBColor(160, 90, 0)),
        )))?;
    }
    let per_second = |counts: &[u64]| -> Vec<(f64, f64)> {
        counts
            .iter()
            .enumerate()
            .map(|(i, n)| ((i as f64 + 0.5) * s.bin, *n as f64 / s.bin))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(per_second(&s.ok), OK_COLOR.stroke_width(2)))?
        .label("ok")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], OK_COLOR.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            per_second(&s.bad),
            BAD_COLOR.stroke_width(2),
        ))?
        .label("not committed / error")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BAD_COLOR.stroke_width(2)));
    chart
        .draw_series(
            per_second(&s.unknown)
                .into_iter()
                .filter(|(_, n)| *n > 0.0)
                .map(|(x, n)| Cross::new((x, n), 5, UNKNOWN_COLOR.stroke_width(2))),
        )?
        .label("outcome unknown")
        .legend(|(x, y)| Cross::new((x + 8, y), 4, UNKNOWN_COLOR.stroke_width(2)));
    let mark_y = peak * 1.27;
    let marks = |verdict: &'static str| {
        s.resolutions
            .iter()
            .filter(move |(_, v)| match verdict {
                "committed" | "aborted" => v == verdict,
                _ => v != "committed" && v != "aborted",
            })
            .map(|(t, _)| *t)
    };
    chart
        .draw_series(
            marks("committed")
                .map(|t| TriangleMarker::new((t, mark_y + peak * 0.03), 5, OK_COLOR.filled())),
        )?
        .label("resolved committed")
        .legend(|(x, y)| TriangleMarker::new((x + 8, y), 5, OK_COLOR.filled()));
    chart
        .draw_series(marks("aborted").map(|t| Circle::new((t, mark_y), 4, ABORTED_COLOR.filled())))?
        .label("resolved aborted")
        .legend(|(x, y)| Circle::new((x + 8, y), 4, ABORTED_COLOR.filled()));
    chart
        .draw_series(
            marks("unknown")
                .map(|t| Cross::new((t, mark_y - peak * 0.03), 6, UNKNOWN_COLOR.stroke_width(3))),
        )?
        .label("resolved unknown")
        .legend(|(x, y)| Cross::new((x + 8, y), 4, UNKNOWN_COLOR.stroke_width(3)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::history;

    fn lines(text: &str) -> Vec<Line> {
        // A directory per call: the tests run in parallel, and one named after the process
        // was removed under the other.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        std::fs::write(&path, text).unwrap();
        history::read(&path).unwrap()
    }

    const HISTORY: &str = r#"{"type":"invoke","t":1000.0,"wall":"w","call":1,"worker":0,"op":{"op":"insert","key":"w0-0"}}
{"type":"complete","t":1500.0,"wall":"w","call":1,"result":"ok"}
{"type":"nemesis","t":2000.0,"wall":"w","fault":"crash","phase":"start"}
{"type":"invoke","t":2100.0,"wall":"w","call":2,"worker":0,"op":{"op":"insert","key":"w0-1"}}
{"type":"nemesis","t":3000.0,"wall":"w","fault":"crash","phase":"end"}
{"type":"complete","t":3200.0,"wall":"w","call":2,"result":"unknown","xid":7}
{"type":"nemesis","t":3500.0,"wall":"w","fault":"hung","phase":"start"}
"#;

    #[test]
    fn calls_faults_and_resolutions_land_where_they_happened() {
        let s = series(&lines(HISTORY));
        assert_eq!(s.ok.iter().sum::<u64>(), 1);
        assert_eq!(s.ok[0], 1);
        assert_eq!(s.unknown.iter().sum::<u64>(), 1);
        assert_eq!(s.unknown[2], 1);
        assert_eq!(s.bad.iter().sum::<u64>(), 0);
        assert_eq!(
            s.faults,
            vec![
                ("crash".to_owned(), 1.0, 2.0),
                // Never ended: drawn to the end of the history.
                ("hung".to_owned(), 2.5, 2.5),
            ]
        );
    }

    #[test]
    fn the_svg_names_the_faults_and_the_outcomes() {
        let mut out = String::new();
        draw(&series(&lines(HISTORY)), "soak", &mut out).unwrap();
        assert!(out.starts_with("<svg"), "{}", &out[..out.len().min(80)]);
        for text in ["crash", "hung", "outcome unknown", "resolved committed"] {
            assert!(out.contains(text), "{text} missing from the chart");
        }
    }

    #[test]
    fn an_empty_history_draws_an_empty_chart() {
        let mut out = String::new();
        draw(&series(&[]), "soak", &mut out).unwrap();
        assert!(out.contains("</svg>"));
    }
}
