//! Draws the swap-deadlock figure (docs/swap-deadlock.svg): free memory,
//! swap used and bytes served over time, one panel per boot.

use std::path::Path;

use anyhow::anyhow;

use super::verdict::{Run, Sample};
use crate::util::Result;

/// Draws `docs/swap-deadlock.svg`: free memory, swap used and bytes served over
/// time, one panel per run, two to a row (`none` and `harden`).
pub fn plot(title: &str, panels: &[(String, &Run)], path: &Path) -> Result {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let rows = panels.len().div_ceil(2).max(1);
    let columns = panels.len().clamp(1, 2);
    let root = SVGBackend::new(path, (1200, 40 + 480 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| err(&e))?;
    let areas = root.split_evenly((rows, columns));
    for ((title, run), area) in panels.iter().zip(&areas) {
        // Each panel its own scale: the stalled run moves a few MiB, the
        // surviving one a gigabyte.
        let y_hi = run
            .samples
            .iter()
            .map(|s| s.free_mib.max(s.swap_mib).max(s.served_mib))
            .fold(16.0, f64::max)
            * 1.15;
        let t0 = run.samples.first().map_or(0.0, |s| s.t);
        let t_hi = run.samples.last().map_or(1.0, |s| s.t - t0).max(1.0) * 1.05;
        let mut chart = ChartBuilder::on(area)
            .caption(title.as_str(), ("sans-serif", 17))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_hi, 0.0..y_hi)
            .map_err(|e| err(&e))?;
        crate::figure::grid(
            chart
                .configure_mesh()
                .x_desc("seconds since the hog started")
                .y_desc("MiB"),
        )
        .draw()
        .map_err(|e| err(&e))?;
        type Series = (&'static str, RGBColor, fn(&Sample) -> f64);
        let series: [Series; 3] = [
            ("free memory", RGBColor(30, 90, 200), |s| s.free_mib),
            ("swap used", RGBColor(200, 40, 40), |s| s.swap_mib),
            (
                "served by the daemon (written + read)",
                RGBColor(20, 150, 60),
                |s| s.served_mib,
            ),
        ];
        for (label, color, y) in series {
            let points: Vec<(f64, f64)> = run.samples.iter().map(|s| (s.t - t0, y(s))).collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
