//! The figures, drawn as SVG: docs/benchmarks.md's time and RSS of locking
//! an untouched mapping, and docs/secrets.md's secret allocators side by
//! side.

use anyhow::anyhow;
use std::path::Path;

use super::parse::OnfaultRow;
use super::secrets::{thousands, Secrets, Time, PEERS};
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

/// The figure of docs/secrets.md: one horizontal bar per implementation in
/// two panels, create + drop time (log scale) and live secrets under the
/// memlock limit, each bar labelled with its figure (and the count's with
/// how it ended). The crate's implementations in blue, the others in
/// orange.
pub(super) fn plot_secrets(s: &Secrets, caption: &str, path: &Path) -> util::Result {
    use plotters::prelude::*;

    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let ours = RGBColor(30, 90, 200);
    let theirs = RGBColor(230, 140, 20);
    let n = PEERS.len();
    // Row i is drawn at y = n - 1 - i, so the first implementation is on top.
    let row_y = |i: usize| (n - 1 - i) as f64;
    let name_of = |y: &f64| -> String {
        let i = n as f64 - 1.0 - y.round();
        if (y - y.round()).abs() > 0.01 || i < 0.0 {
            return String::new();
        }
        PEERS
            .get(i as usize)
            .map_or(String::new(), |p| p.2.to_string())
    };

    let timed: Vec<Option<f64>> = s
        .times
        .iter()
        .map(|t| match t {
            Time::Timed { median, .. } => Some(*median),
            Time::NotTimed(_) => None,
        })
        .collect();
    let t_lo = timed
        .iter()
        .flatten()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let t_hi = timed.iter().flatten().copied().fold(1.0, f64::max);
    let t_range = (
        10f64.powf((t_lo / 2.0).log10().floor()),
        // Room on the right for the label of the longest bar.
        10f64.powf((t_hi * 30.0).log10().ceil()),
    );
    let t_ticks: Vec<f64> = {
        let mut v = Vec::new();
        let mut p = t_range.0;
        while p <= t_range.1 * 1.0001 {
            v.push(p);
            p *= 10.0;
        }
        v
    };
    let fmt_ns = |v: &f64| {
        if *v >= 1e6 {
            format!("{} ms", v / 1e6)
        } else if *v >= 1e3 {
            format!("{} µs", v / 1e3)
        } else {
            format!("{v} ns")
        }
    };
    let c_hi = s.max as f64 * 1.9;
    let fmt_count = |v: &f64| thousands(v.round() as u64);

    let root = SVGBackend::new(path, (1300, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(caption, ("sans-serif", 18))
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(650);
    let bar = |i: usize, x0: f64, x1: f64| {
        let color = if PEERS[i].3 { ours } else { theirs };
        Rectangle::new(
            [(x0, row_y(i) - 0.32), (x1, row_y(i) + 0.32)],
            color.filled(),
        )
    };
    let label_style = ("sans-serif", 14).into_font().color(&BLACK);

    // Left: create + drop, log scale.
    {
        let mut chart = ChartBuilder::on(&left)
            .caption("Create + drop of one secret (median)", ("sans-serif", 17))
            .margin(14)
            .x_label_area_size(46)
            .y_label_area_size(190)
            .build_cartesian_2d(
                (t_range.0..t_range.1)
                    .log_scale()
                    .with_key_points(t_ticks.clone()),
                -0.6..n as f64 - 0.4,
            )
            .map_err(|e| err(&e))?;
        figure::grid(
            chart
                .configure_mesh()
                .disable_y_mesh()
                // A label per whole y: one per row.
                .y_labels(n + 1)
                .x_desc("time per create + drop (log scale)")
                .x_label_formatter(&fmt_ns)
                .y_label_formatter(&name_of),
        )
        .draw()
        .map_err(|e| err(&e))?;
        for (i, t) in timed.iter().enumerate() {
            match t {
                Some(ns) => {
                    chart
                        .draw_series(std::iter::once(bar(i, t_range.0, *ns)))
                        .map_err(|e| err(&e))?;
                    chart
                        .draw_series(std::iter::once(Text::new(
                            super::report::time(*ns),
                            (*ns * 1.15, row_y(i) + 0.12),
                            label_style.clone(),
                        )))
                        .map_err(|e| err(&e))?;
                }
                None => {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            "not timed here".to_string(),
                            (t_range.0 * 1.2, row_y(i) + 0.12),
                            label_style.clone(),
                        )))
                        .map_err(|e| err(&e))?;
                }
            }
        }
    }

    // Right: live secrets under the limit, linear.
    {
        let mut chart = ChartBuilder::on(&right)
            .caption(
                format!(
                    "Live secrets under an {} MiB RLIMIT_MEMLOCK, uid {}",
                    s.limit >> 20,
                    s.uid
                ),
                ("sans-serif", 17),
            )
            .margin(14)
            .x_label_area_size(46)
            .y_label_area_size(10)
            .build_cartesian_2d(0.0..c_hi, -0.6..n as f64 - 0.4)
            .map_err(|e| err(&e))?;
        figure::grid(
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_labels(5)
                .x_desc(format!(
                    "32-byte secrets alive at the first failure (the run stops at {})",
                    thousands(s.max)
                ))
                .x_label_formatter(&fmt_count)
                .y_label_formatter(&|_| String::new()),
        )
        .draw()
        .map_err(|e| err(&e))?;
        for (i, c) in s.counts.iter().enumerate() {
            let alive = c.alive as f64;
            chart
                .draw_series(std::iter::once(bar(i, 0.0, alive.max(c_hi * 0.002))))
                .map_err(|e| err(&e))?;
            let how = match c.how.as_str() {
                "reached" => "the run's maximum".to_string(),
                "error" => c.detail.clone(),
                "panic" => "panic".to_string(),
                "signal" => c.detail.clone(),
                _ => "failed".to_string(),
            };
            let locked = c
                .vmlck_kb
                .map_or(String::new(), |kb| format!(", {} kB locked", thousands(kb)));
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{}: {how}{locked}", thousands(c.alive)),
                    (alive + c_hi * 0.015, row_y(i) + 0.12),
                    label_style.clone(),
                )))
                .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
