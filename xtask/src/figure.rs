//! The look the project's SVG figures share (docs/onfault.svg,
//! docs/swap-deadlock.svg): the fonts of the axes and the grid lines.

use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::Ranged;
use plotters::prelude::{DrawingBackend, RGBColor, WHITE};

/// The tick labels' font.
const LABEL_FONT: (&str, u32) = ("sans-serif", 14);

/// Sets the axes' fonts and a light grid on a chart's mesh: only the bold
/// lines, in light grey.
pub fn grid<'m, 'a, 'b, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB> {
    mesh.label_style(LABEL_FONT)
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
}
