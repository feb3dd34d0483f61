//! Charts, drawn on the server by plotters' SVG backend and inlined in the page: no script, no
//! font files, no request of their own, and the Content-Security-Policy stays strict (the SVG
//! uses presentation attributes, never `style`). Each chart is wrapped as one image with a
//! text alternative, since a screen reader cannot read bars; the numbers are on the page too.
//! Values are `f64` here because they are only drawn: money shown as text is always decimal.

use plotters::prelude::*;

/// One bar of a bar chart: its label and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Under the bar.
    pub label: String,
    /// Its height.
    pub value: f64,
}

/// The bars' colour: the link blue of the stylesheet, 4.5:1 on white.
const BAR: RGBColor = RGBColor(29, 78, 216);
const AXIS: RGBColor = RGBColor(74, 85, 101);

/// A bar chart as an SVG document, `width` × `height` pixels (scaled down by CSS on narrow
/// screens), with `y_label` on the value axis. `None` when plotters fails, which a page
/// survives by leaving the chart out.
pub fn bars(bars: &[Bar], y_label: &str, width: u32, height: u32) -> Option<String> {
    if bars.is_empty() {
        return None;
    }
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max * 1.15 } else { 1.0 };
    let count = u32::try_from(bars.len()).ok()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d((0..count.saturating_sub(1)).into_segmented(), 0f64..top)
            .ok()?;
        let label_every = (bars.len() / 10).max(1);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(208, 213, 221))
            .axis_style(AXIS)
            .label_style(("sans-serif", 12).into_font().color(&AXIS))
            .y_desc(y_label)
            .y_labels(5)
            .y_label_formatter(&|v| {
                if top > 10.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            })
            .x_labels(bars.len())
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => {
                    let i = *i as usize;
                    if i.is_multiple_of(label_every) {
                        bars.get(i).map(|b| b.label.clone()).unwrap_or_default()
                    } else {
                        String::new()
                    }
                }
                _ => String::new(),
            })
            .draw()
            .ok()?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(BAR.filled())
                    .margin(if bars.len() > 20 { 1 } else { 8 })
                    .data(bars.iter().enumerate().map(|(i, b)| (i as u32, b.value))),
            )
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_svg_without_script_or_style_attributes() {
        let data: Vec<Bar> = (1..=30)
            .map(|d| Bar {
                label: format!("{d}"),
                value: f64::from(d % 7),
            })
            .collect();
        let svg = bars(&data, "Events", 640, 220).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        for absent in ["<script", "style=", "href="] {
            assert!(!svg.contains(absent), "{absent}");
        }
        assert!(bars(&[], "Events", 640, 220).is_none());
        let flat = vec![Bar {
            label: "Nov".into(),
            value: 0.0,
        }];
        assert!(bars(&flat, "USD", 640, 220).is_some());
    }
}
