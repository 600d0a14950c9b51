//! The figure of docs/benchmarks.md: time and RSS of locking an untouched
//! mapping, drawn as SVG.

use anyhow::anyhow;
use std::path::Path;

use super::parse::OnfaultRow;
use crate::{figure, util};

/// Draws time and RSS against the mapping size, log-scaled, one line per
/// call.
pub(super) fn plot(rows: &[OnfaultRow], caption: &str, path: &Path) -> util::Result {
    use plotters::prelude::*;

    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    const MIB: f64 = (1u64 << 20) as f64;
    let series: Vec<(&str, RGBColor, bool)> = vec![
        ("lock_all(CURRENT)", RGBColor(200, 40, 40), true),
        ("lock(region)", RGBColor(230, 140, 20), false),
        ("lock_all(CURRENT | ONFAULT)", RGBColor(30, 90, 200), true),
        ("lock_on_fault(region)", RGBColor(20, 150, 130), false),
    ];
    // The names the bench prints, in the order of `series`.
    let calls = [
        "lock_all(CURRENT)",
        "lock",
        "lock_all(CURRENT|ONFAULT)",
        "lock_on_fault",
    ];
    let points = |call: &str, y: &dyn Fn(&OnfaultRow) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.call == call)
            .map(|r| (r.size as f64 / MIB, y(r)))
            .collect()
    };
    let sizes: Vec<f64> = {
        let mut s: Vec<f64> = rows.iter().map(|r| r.size as f64 / MIB).collect();
        s.sort_by(f64::total_cmp);
        s.dedup();
        s
    };
    let x_lo = sizes.first().copied().unwrap_or(1.0) / 1.4;
    let x_hi = sizes.last().copied().unwrap_or(1.0) * 1.4;
    let span = |vals: Vec<f64>| {
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(0.0, f64::max);
        (lo, hi)
    };
    // Time in microseconds, RSS in MiB.
    let (t_lo, t_hi) = span(rows.iter().map(|r| r.median_ns as f64 / 1e3).collect());
    let (r_lo, r_hi) = span(rows.iter().map(|r| r.rss_after as f64 / MIB).collect());
    let decades = |lo: f64, hi: f64| -> Vec<f64> {
        let mut v = Vec::new();
        let mut p = 10f64.powf(lo.log10().floor());
        while p <= hi * 1.0001 {
            if p >= lo * 0.9999 {
                v.push(p);
            }
            p *= 10.0;
        }
        v
    };
    // Whole decades, with room so that no point sits on the frame.
    let t_range = (
        10f64.powf((t_lo / 1.5).log10().floor()),
        10f64.powf((t_hi * 1.5).log10().ceil()),
    );
    let r_range = (r_lo / 2.0, r_hi * 2.5);
    let r_ticks: Vec<f64> = (0..=12)
        .map(|i| 4f64.powi(i) / 4.0)
        .filter(|v| *v >= r_range.0 && *v <= r_range.1)
        .collect();
    let t_ticks = decades(t_range.0, t_range.1);

    let fmt_size = |v: &f64| {
        if *v >= 1024.0 {
            format!("{} GiB", (v / 1024.0).round())
        } else {
            format!("{} MiB", v.round())
        }
    };
    let fmt_time = |v: &f64| {
        if *v >= 1e6 {
            format!("{} s", v / 1e6)
        } else if *v >= 1e3 {
            format!("{} ms", v / 1e3)
        } else {
            format!("{v} µs")
        }
    };
    let fmt_mib = |v: &f64| {
        if *v >= 1024.0 {
            format!("{} GiB", v / 1024.0)
        } else if *v >= 1.0 {
            format!("{v} MiB")
        } else {
            format!("{} KiB", v * 1024.0)
        }
    };

    let root = SVGBackend::new(path, (1200, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(caption, ("sans-serif", 20))
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(600);

    for is_time in [true, false] {
        let (area, title, y_desc, (y_lo, y_hi), ticks): (_, _, _, _, &Vec<f64>) = if is_time {
            (
                &left,
                "Time of the call",
                "time (log scale)",
                t_range,
                &t_ticks,
            )
        } else {
            (
                &right,
                "Resident set (VmRSS) after the call",
                "RSS (log scale)",
                r_range,
                &r_ticks,
            )
        };
        let fmt_y: &dyn Fn(&f64) -> String = if is_time { &fmt_time } else { &fmt_mib };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(46)
            .y_label_area_size(78)
            .build_cartesian_2d(
                (x_lo..x_hi).log_scale().with_key_points(sizes.clone()),
                (y_lo..y_hi).log_scale().with_key_points(ticks.clone()),
            )
            .map_err(|e| err(&e))?;
        figure::grid(
            chart
                .configure_mesh()
                .x_desc("mapping size, untouched (log scale)")
                .y_desc(y_desc)
                .x_label_formatter(&fmt_size)
                .y_label_formatter(fmt_y),
        )
        .draw()
        .map_err(|e| err(&e))?;
        for ((label, color, whole), call) in series.iter().zip(calls) {
            let y: &dyn Fn(&OnfaultRow) -> f64 = if is_time {
                &|r| r.median_ns as f64 / 1e3
            } else {
                &|r| r.rss_after as f64 / MIB
            };
            let data = points(call, y);
            let style = color.stroke_width(2);
            chart
                .draw_series(LineSeries::new(data.clone(), style))
                .map_err(|e| err(&e))?
                .label(*label)
                .legend(move |(x, y)| {
                    let line = PathElement::new(vec![(0, 0), (24, 0)], color.stroke_width(2));
                    let marker: DynElement<_, _> = if *whole {
                        Circle::new((12, 0), 4, color.filled()).into_dyn()
                    } else {
                        TriangleMarker::new((12, 0), 5, color.filled()).into_dyn()
                    };
                    EmptyElement::at((x, y)) + line + marker
                });
            if *whole {
                chart
                    .draw_series(data.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|e| err(&e))?;
            } else {
                chart
                    .draw_series(
                        data.iter()
                            .map(|&p| TriangleMarker::new(p, 5, color.filled())),
                    )
                    .map_err(|e| err(&e))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
