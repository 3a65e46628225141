//! The `--report` timeline: successes and errors per 100 ms for both clients, fault windows
//! shaded and labelled. Drawn with plotters' SVG backend, which writes text as `<text>`
//! elements, so no font library is needed and any browser or SVG viewer shows it.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::output::Report;

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
const OK_COLOR: RGBColor = RGBColor(46, 139, 87);
const ERR_COLOR: RGBColor = RGBColor(214, 39, 40);
const FAULT_COLOR: RGBColor = RGBColor(255, 170, 60);

/// What to write, chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Svg,
    Html,
}

impl Format {
    /// `.svg` or `.html` / `.htm`, else `None`.
    pub(crate) fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "svg" => Some(Format::Svg),
            "html" | "htm" => Some(Format::Html),
            _ => None,
        }
    }
}

/// Writes the report file.
pub(crate) fn write(path: &Path, format: Format, report: &Report) -> std::io::Result<()> {
    let svg = svg(report).map_err(std::io::Error::other)?;
    let contents = match format {
        Format::Svg => svg,
        Format::Html => html(report, &svg),
    };
    std::fs::write(path, contents)
}

/// The chart as an SVG document.
pub(crate) fn svg(report: &Report) -> Result<String, String> {
    let mut out = String::new();
    draw(report, &mut out).map_err(|e| format!("cannot draw the chart: {e}"))?;
    Ok(out)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(report: &Report, out: &mut String) -> DrawResult {
    let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "pgsteady drill: successes and errors per 100 ms, fault windows shaded",
        ("sans-serif", 22),
    )?;
    let (top, bottom) = root.split_vertically(HEIGHT / 2 - 10);
    let bucket_s = report.timeline.bucket_ms as f64 / 1000.0;
    let span_s = report.duration_ms / 1000.0;
    let peak = report
        .timeline
        .naive
        .iter()
        .chain(&report.timeline.pgsteady)
        .map(|(ok, err)| (*ok).max(*err))
        .max()
        .unwrap_or(1)
        .max(1);
    let y_max = (peak as f64 * 1.35).ceil();
    let panels = [
        (
            &top,
            "naive tokio-postgres: one connection per worker, reconnect on error",
            &report.timeline.naive,
        ),
        (
            &bottom,
            "pgsteady::Pool: run (reads) and transaction (writes)",
            &report.timeline.pgsteady,
        ),
    ];
    for (area, caption, buckets) in panels {
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(56)
            // Room on the right, after the drill ended, for the legend.
            .build_cartesian_2d(0f64..span_s.max(bucket_s) * 1.2, 0f64..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .y_labels(8)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .x_desc("seconds since the clients started")
            .y_desc("calls per 100 ms")
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()?;
        // Fault windows: at least a few pixels wide, names staggered on three rows.
        let min_width = span_s / 400.0;
        for (i, fault) in report.faults.iter().enumerate() {
            let x0 = fault.start_ms / 1000.0;
            let x1 = (fault.end_ms / 1000.0).max(x0 + min_width);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x1, y_max)],
                FAULT_COLOR.mix(0.25).filled(),
            )))?;
            let row = (i % 3) as f64;
            chart.draw_series(std::iter::once(Text::new(
                fault.name.to_owned(),
                (x0, y_max * (0.97 - 0.075 * row)),
                ("sans-serif", 13).into_font().color(&BLACK),
            )))?;
        }
        let points = |pick: fn(&(u64, u64)) -> u64| {
            buckets
                .iter()
                .enumerate()
                .map(move |(i, b)| ((i as f64 + 0.5) * bucket_s, pick(b) as f64))
        };
        chart
            .draw_series(AreaSeries::new(
                points(|b| b.0),
                0.0,
                OK_COLOR.mix(0.35).filled(),
            ))?
            .label("successes")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], OK_COLOR.filled()));
        chart
            .draw_series(LineSeries::new(points(|b| b.1), ERR_COLOR.stroke_width(2)))?
            .label("errors surfaced to callers")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], ERR_COLOR.stroke_width(2)));
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (0.0, 0.0)],
                FAULT_COLOR.mix(0.25).filled(),
            )))?
            .label("fault window")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], FAULT_COLOR.mix(0.4).filled())
            });
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 13))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained page: the chart inline, the table, the setup and the verdict.
fn html(report: &Report, svg: &str) -> String {
    let mut out = String::new();
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>pgsteady drill</title><style>\
         body{font-family:sans-serif;margin:2em;color:#222}\
         table{border-collapse:collapse;font-size:14px}\
         th,td{padding:3px 9px;border-bottom:1px solid #ddd;text-align:right}\
         td.l,th.l{text-align:left}tr.pg td{background:#f3faf5}\
         .held{color:#2e8b57}.broken{color:#d62728}\
         </style></head><body>\n<h1>pgsteady drill</h1>\n",
    );
    let _ = writeln!(
        out,
        "<p>{} faults in {:.1} s against PostgreSQL {}; {} workers per client, one call per worker every {} ms (1 in 3 a write).</p>",
        report.faults.len(),
        report.duration_ms / 1000.0,
        escape(&report.server_version),
        report.workers_per_client,
        report.pace_ms
    );
    let _ = writeln!(
        out,
        "<p><b>naive</b>: tokio-postgres, one connection per worker, reconnect at once after any error, no timeouts.<br>\
         <b>pgsteady</b>: {}</p>",
        escape(&report.pgsteady_config.join(", "))
    );
    out.push_str(svg);
    out.push_str("\n<h2>Per fault</h2>\n<table><tr><th class=l>fault</th><th class=l>client</th><th>errors</th><th>ready &rarr; first success</th><th>no success</th><th>writes ok</th><th>present</th><th>duplicated</th><th>unknown (committed)</th><th class=l>error classes</th></tr>\n");
    let cell = |ms: Option<f64>| ms.map_or_else(|| "never".to_owned(), |ms| format!("{ms:.0} ms"));
    for f in &report.faults {
        for (client, c) in [("naive", &f.naive), ("pgsteady", &f.pgsteady)] {
            let _ = writeln!(
                out,
                "<tr{}><td class=l title=\"{}\">{}</td><td class=l>{client}</td><td>{}</td><td>{}</td><td>{:.0} ms</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td class=l>{}</td></tr>",
                if client == "pgsteady" {
                    " class=pg"
                } else {
                    ""
                },
                escape(f.summary),
                if client == "naive" { f.name } else { "" },
                c.errors,
                cell(c.ready_to_first_success_ms),
                c.no_success_ms,
                c.writes.acknowledged,
                c.writes.present,
                c.writes.duplicated,
                c.writes.unknown,
                c.writes.unknown_present,
                escape(&super::figures::classes(&c.errors_by_class)),
            );
        }
    }
    out.push_str("</table>\n<h2>Faults</h2>\n<ul>\n");
    for f in &report.faults {
        let _ = writeln!(
            out,
            "<li><b>{}</b>: {}{}</li>",
            f.name,
            escape(f.summary),
            f.notes
                .iter()
                .map(|n| format!("; {}", escape(n)))
                .collect::<String>()
        );
    }
    out.push_str("</ul>\n");
    if report.guarantees.held {
        let _ = writeln!(
            out,
            "<p class=held>pgsteady's guarantees held: {}.</p>",
            escape(&report.guarantees.checked.join("; "))
        );
    } else {
        let _ = writeln!(out, "<p class=broken>pgsteady's guarantees BROKEN:</p><ul>");
        for v in &report.guarantees.violations {
            let _ = writeln!(out, "<li class=broken>{}</li>", escape(v));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::sample;

    #[test]
    fn the_chart_is_an_svg_with_both_clients_and_the_fault_windows() {
        let svg = svg(&sample()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(
            svg.contains("\nfast-restart\n</text>"),
            "the fault is labelled"
        );
        assert!(svg.contains("naive tokio-postgres"));
        assert!(svg.contains("pgsteady::Pool"));
        assert!(svg.contains("errors surfaced to callers"));
    }

    #[test]
    fn the_page_embeds_the_chart_and_escapes_text() {
        let mut report = sample();
        report.faults[0].notes.push("<b>&</b>".to_owned());
        let page = html(&report, &svg(&report).unwrap());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<svg"));
        assert!(page.contains("&lt;b&gt;&amp;&lt;/b&gt;"));
        assert!(page.contains("guarantees held"));
    }
}
