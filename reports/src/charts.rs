//! The report's charts, drawn with plotters as PNG and SVG.
//!
//! Text is set in DejaVu Sans, bundled in the binary (`fonts/`), so a chart
//! looks the same on every machine. PNGs are drawn at twice the display size
//! so they stay sharp on high-density screens and in print.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::rows::{money_display, money_f64};
use crate::weekly::WeeklyFigures;

/// The family name the bundled font is registered under.
const FONT: &str = "DejaVu Sans";
static FONT_BYTES: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// Chart size in CSS pixels; the PNG has twice as many.
pub const WIDTH: u32 = 880;
/// Chart height in CSS pixels.
pub const HEIGHT: u32 = 400;

const NEGATIVE: RGBColor = RGBColor(192, 57, 43);
const POSITIVE: RGBColor = RGBColor(36, 113, 163);
const GRID: RGBColor = RGBColor(225, 228, 232);
const INK: RGBColor = RGBColor(40, 44, 52);
const SERIES: [RGBColor; 4] = [
    RGBColor(36, 113, 163),
    RGBColor(211, 84, 0),
    RGBColor(125, 60, 152),
    RGBColor(22, 160, 133),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are part of the binary; a failure here is a build bug.
        // plotters' own defaults ask for "sans-serif": the same font.
        for name in [FONT, "sans-serif"] {
            plotters::style::register_font(name, FontStyle::Normal, FONT_BYTES)
                .unwrap_or_else(|_| panic!("the bundled font does not parse"));
        }
    });
}

/// A drawing failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw chart {name}: {reason}")]
pub struct ChartError {
    name: String,
    reason: String,
}

type DrawResult = std::result::Result<(), String>;

/// One chart written as `<name>.png` and `<name>.svg`.
#[derive(Debug, Clone)]
pub struct Chart {
    /// File stem.
    pub name: &'static str,
    /// Title shown above it in the report.
    pub title: &'static str,
    /// What it shows, for the image's alt text.
    pub alt: String,
    /// The PNG file.
    pub png: PathBuf,
    /// The SVG file.
    pub svg: PathBuf,
}

/// Draws every chart of the report into `dir`.
pub fn draw_all(dir: &Path, f: &WeeklyFigures) -> Result<Vec<Chart>, ChartError> {
    register_font();
    let mut charts = Vec::new();

    // Margin by tenant.
    let tenants: Vec<(String, f64)> = f
        .accounts
        .iter()
        .map(|a| (a.tenant_id.clone(), money_f64(a.margin)))
        .collect();
    charts.push(write(
        dir,
        "margin_by_tenant",
        "Margin by tenant",
        format!(
            "Bar chart of each tenant's margin in USD for {}; negative margins in red.",
            f.week
        ),
        Spec::Bars {
            items: tenants,
            y_label: "Margin (USD)",
            sign_colours: true,
        },
    )?);

    // Cost per success trend.
    let weeks: Vec<String> = f.trend.iter().map(|p| p.week.label()).collect();
    let cps: Vec<Option<f64>> = f
        .trend
        .iter()
        .map(|p| p.cost_per_success.map(money_f64))
        .collect();
    charts.push(write(
        dir,
        "cost_per_success_trend",
        "Cost per successful run, last 8 weeks",
        "Line chart of cost per successful run in USD over the last eight ISO weeks.".into(),
        Spec::Lines {
            weeks: weeks.clone(),
            series: vec![("cost per success", cps)],
            y_label: "USD per successful run",
            y_max: None,
        },
    )?);

    // Quality rates.
    let pct = |v: Option<f64>| v.map(|x| x * 100.0);
    let series = vec![
        (
            "success rate",
            f.trend
                .iter()
                .map(|p| pct(p.success_rate))
                .collect::<Vec<_>>(),
        ),
        (
            "override rate",
            f.trend.iter().map(|p| pct(p.override_rate)).collect(),
        ),
        (
            "policy-block rate",
            f.trend.iter().map(|p| pct(p.policy_block_rate)).collect(),
        ),
        (
            "tool-error rate",
            f.trend.iter().map(|p| pct(p.tool_error_rate)).collect(),
        ),
    ];
    charts.push(write(
        dir,
        "quality_rates_trend",
        "Quality rates, last 8 weeks",
        "Line chart of success, override, policy-block and tool-error rates in percent over the last eight ISO weeks.".into(),
        Spec::Lines {
            weeks,
            series,
            y_label: "Percent of runs / calls",
            y_max: Some(100.0),
        },
    )?);

    // Cost by model.
    let models: Vec<(String, f64)> = f
        .cost_by_model
        .iter()
        .map(|(m, _, cost, _)| (m.clone(), money_f64(*cost)))
        .collect();
    charts.push(write(
        dir,
        "cost_by_model",
        "Cost by model",
        format!(
            "Bar chart of model-call cost in USD by model for {}.",
            f.week
        ),
        Spec::Bars {
            items: models,
            y_label: "Cost (USD)",
            sign_colours: false,
        },
    )?);
    Ok(charts)
}

/// What a chart shows.
enum Spec {
    Bars {
        items: Vec<(String, f64)>,
        y_label: &'static str,
        sign_colours: bool,
    },
    Lines {
        weeks: Vec<String>,
        series: Vec<(&'static str, Vec<Option<f64>>)>,
        y_label: &'static str,
        y_max: Option<f64>,
    },
}

fn draw_spec<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    scale: f64,
    spec: &Spec,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    match spec {
        Spec::Bars {
            items,
            y_label,
            sign_colours,
        } => bars(root, scale, items, y_label, *sign_colours),
        Spec::Lines {
            weeks,
            series,
            y_label,
            y_max,
        } => lines(root, scale, weeks, series, y_label, *y_max),
    }
}

/// Draws `spec` as a PNG (at twice the size) and an SVG of the same layout.
fn write(
    dir: &Path,
    name: &'static str,
    title: &'static str,
    alt: String,
    spec: Spec,
) -> Result<Chart, ChartError> {
    let err = |reason: String| ChartError {
        name: name.to_string(),
        reason,
    };
    let png = dir.join(format!("{name}.png"));
    let svg = dir.join(format!("{name}.svg"));
    // Drawn under temporary names and renamed, so a reader (or a killed
    // run) never leaves half a chart in place.
    let pid = std::process::id();
    // The extension stays last: the PNG encoder picks the format from it.
    let png_tmp = dir.join(format!("{name}.tmp-{pid}.png"));
    let svg_tmp = dir.join(format!("{name}.tmp-{pid}.svg"));
    {
        let root = BitMapBackend::new(&png_tmp, (WIDTH * 2, HEIGHT * 2)).into_drawing_area();
        draw_spec(&root, 2.0, &spec).map_err(err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    {
        let root = SVGBackend::new(&svg_tmp, (WIDTH, HEIGHT)).into_drawing_area();
        draw_spec(&root, 1.0, &spec).map_err(err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&png_tmp, &png).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&svg_tmp, &svg).map_err(|e| err(e.to_string()))?;
    Ok(Chart {
        name,
        title,
        alt,
        png,
        svg,
    })
}

fn font(size: f64, scale: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, size * scale).into_font()).color(&INK)
}

fn bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    scale: f64,
    items: &[(String, f64)],
    y_label: &str,
    sign_colours: bool,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let s = |v: f64| (v * scale) as u32;
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    if items.is_empty() {
        root.draw(&Text::new(
            "No data this week",
            (s(20.0) as i32, s(20.0) as i32),
            font(16.0, scale),
        ))
        .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let max = items.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let min = items.iter().map(|(_, v)| *v).fold(0.0_f64, f64::min);
    let pad = (max - min).abs().max(1e-9) * 0.08;
    let (lo, hi) = (
        if min < 0.0 { min - pad } else { 0.0 },
        if max > 0.0 { max + pad } else { pad },
    );
    let names: Vec<String> = items.iter().map(|(n, _)| n.clone()).collect();
    let mut chart = ChartBuilder::on(root)
        .margin(s(12.0))
        .x_label_area_size(s(48.0))
        .y_label_area_size(s(84.0))
        // An integer range is inclusive in plotters: 0..n-1 holds n slots.
        .build_cartesian_2d((0..items.len() - 1).into_segmented(), lo..hi)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(GRID)
        .bold_line_style(GRID)
        .y_desc(y_label)
        .y_label_style(font(13.0, scale))
        .x_label_style(font(13.0, scale))
        .axis_desc_style(font(14.0, scale))
        .y_label_formatter(&|v| money_axis(*v))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_labels(items.len())
        .draw()
        .map_err(|e| e.to_string())?;
    let n = items.len();
    let end = |i: usize| {
        if i + 1 == n {
            SegmentValue::Last
        } else {
            SegmentValue::Exact(i + 1)
        }
    };
    chart
        .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            let colour = if sign_colours && *v < 0.0 {
                NEGATIVE
            } else {
                POSITIVE
            };
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i), 0.0), (end(i), *v)],
                colour.filled(),
            );
            bar.set_margin(0, 0, s(10.0), s(10.0));
            bar
        }))
        .map_err(|e| e.to_string())?;
    // The zero line.
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(SegmentValue::Exact(0), 0.0), (SegmentValue::Last, 0.0)],
            INK.stroke_width(s(1.0).max(1)),
        )))
        .map_err(|e| e.to_string())?;
    // Each bar's value at its end, so a small loss is still readable.
    chart
        .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            let colour: &'static RGBColor = if sign_colours && *v < 0.0 {
                &NEGATIVE
            } else {
                &INK
            };
            let style = font(12.0, scale).color(colour).pos(Pos::new(
                HPos::Center,
                if *v < 0.0 { VPos::Top } else { VPos::Bottom },
            ));
            let offset = if *v < 0.0 {
                s(4.0) as i32
            } else {
                -(s(4.0) as i32)
            };
            EmptyElement::at((SegmentValue::CenterOf(i), *v))
                + Text::new(money_axis(*v), (0, offset), style)
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    scale: f64,
    weeks: &[String],
    series: &[(&'static str, Vec<Option<f64>>)],
    y_label: &str,
    y_max: Option<f64>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let s = |v: f64| (v * scale) as u32;
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    // A legend strip above the plot, so it never hides a line.
    let (legend, plot) = root.split_vertically(s(34.0));
    let mut x = s(96.0) as i32;
    for (k, (name, _)) in series.iter().enumerate() {
        let colour = SERIES[k % SERIES.len()];
        let y = s(18.0) as i32;
        legend
            .draw(&PathElement::new(
                vec![(x, y), (x + s(22.0) as i32, y)],
                colour.stroke_width(s(3.0).max(1)),
            ))
            .map_err(|e| e.to_string())?;
        let style = font(13.0, scale).pos(Pos::new(HPos::Left, VPos::Center));
        legend
            .draw(&Text::new(name.to_string(), (x + s(28.0) as i32, y), style))
            .map_err(|e| e.to_string())?;
        x += s(44.0) as i32 + (name.chars().count() as f64 * 7.6 * scale) as i32;
    }
    let root = &plot;
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .fold(0.0_f64, f64::max);
    let hi = y_max.unwrap_or(if top > 0.0 { top * 1.15 } else { 1.0 });
    let mut chart = ChartBuilder::on(root)
        .margin(s(12.0))
        .margin_right(s(44.0))
        .x_label_area_size(s(48.0))
        .y_label_area_size(s(84.0))
        .build_cartesian_2d(0..weeks.len().saturating_sub(1).max(1), 0.0..hi)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .light_line_style(GRID)
        .bold_line_style(GRID)
        .y_desc(y_label)
        .x_desc("ISO week")
        .y_label_style(font(13.0, scale))
        .x_label_style(font(13.0, scale))
        .axis_desc_style(font(14.0, scale))
        .x_labels(weeks.len())
        .x_label_formatter(&|i| weeks.get(*i).cloned().unwrap_or_default())
        .y_label_formatter(&|v| {
            if y_max.is_some() {
                format!("{v:.0}%")
            } else {
                money_axis(*v)
            }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    for (k, (_, values)) in series.iter().enumerate() {
        let colour = SERIES[k % SERIES.len()];
        let points: Vec<(usize, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, v)))
            .collect();
        let style = colour.stroke_width(s(2.0).max(1));
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new(*p, s(3.0), colour.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Axis labels for money: dollars with cents (or more digits when small).
fn money_axis(v: f64) -> String {
    let units = (v * 1e12).round() as i128;
    money_display(units)
}
