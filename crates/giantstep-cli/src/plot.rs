//! Figures from record files (plotters; text in the bundled DejaVu Sans, so PNGs render on machines
//! without system fonts). Plots read records only, never simulation internals.

use crate::tables::{
    cosine_data, mean_std, ok_records, overlap_data, stairway_data, CosinePanel, OverlapPanel, StairwayData,
};
use anyhow::{bail, Context};
use giantstep::sweep::{read_records, Record};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers the bundled font once.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
}

pub use giantstep::sweep::Figure;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn draw_stairway<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &StairwayData) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let xs: Vec<f64> = data.rf.keys().map(|k| *k as f64 / 1e6).collect();
    let (xmin, xmax) = (
        xs.iter().cloned().fold(f64::INFINITY, f64::min),
        xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    );
    // The axis shows the stairway's range: up to the error of predicting 0 and the random
    // features, with room above; a curve that leaves it (a protocol that blows up at small n) is
    // clipped and its points drawn as triangles on the top edge (their values are in summary.md).
    let mut ymax = data.second_moment;
    let mut ceiling = data.second_moment;
    for v in data.rf.values().filter(|v| !v.is_empty()) {
        ceiling = ceiling.max(mean_std(v).0);
    }
    let ceiling = 1.5 * ceiling;
    for m in data.trained.values().chain(std::iter::once(&data.rf)) {
        for v in m.values().filter(|v| !v.is_empty()) {
            let (mu, sd) = mean_std(v);
            ymax = ymax.max(mu + sd);
        }
    }
    let ymax = ymax.min(ceiling / 1.08);
    let top = ymax * 1.08;
    let pad = ((xmax - xmin) * 0.04).max(0.05);
    let mut chart = ChartBuilder::on(root)
        .caption(&data.title, (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((xmin - pad)..(xmax + pad), 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("log n / log d")
        .y_desc("test error")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()?;
    // The theory: thin dashed lines, the colours of the simulated curves.
    let mut labelled = false;
    for (i, steps) in data.trained.keys().enumerate() {
        let Some(pred) = data.predicted.get(steps) else {
            continue;
        };
        let line: Vec<(f64, f64)> = pred.iter().map(|(k, v)| (*k as f64 / 1e6, *v)).collect();
        let color = COLORS[i % COLORS.len()];
        let drawn = chart.draw_series(DashedLineSeries::new(line, 5, 4, color.stroke_width(1)))?;
        if !labelled {
            labelled = true;
            drawn
                .label("theory (dashed, docs/theory.md §6)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
        }
    }
    if !data.predicted_rf.is_empty() {
        let line: Vec<(f64, f64)> = data.predicted_rf.iter().map(|(k, v)| (*k as f64 / 1e6, *v)).collect();
        chart.draw_series(DashedLineSeries::new(line, 5, 4, RGBColor(90, 90, 90).stroke_width(1)))?;
    }
    let mut series =
        |label: String, color: RGBColor, points: Vec<(f64, f64, f64)>, dashed: bool| -> anyhow::Result<()> {
            let style = color.stroke_width(2);
            let line: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
            if dashed {
                chart
                    .draw_series(DashedLineSeries::new(line, 8, 5, style))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            } else {
                chart
                    .draw_series(LineSeries::new(line, style))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            chart.draw_series(
                points
                    .iter()
                    .map(|&(x, m, s)| ErrorBar::new_vertical(x, m - s, m, m + s, color.stroke_width(1), 6)),
            )?;
            chart.draw_series(
                points
                    .iter()
                    .filter(|p| p.1 <= top)
                    .map(|&(x, m, _)| Circle::new((x, m), 3, color.filled())),
            )?;
            chart.draw_series(
                points
                    .iter()
                    .filter(|p| p.1 > top)
                    .map(|&(x, _, _)| TriangleMarker::new((x, top * 0.985), 6, color.filled())),
            )?;
            Ok(())
        };
    for (i, (steps, curve)) in data.trained.iter().enumerate() {
        let pts = curve
            .iter()
            .map(|(k, v)| (*k as f64 / 1e6, mean_std(v).0, mean_std(v).1))
            .collect();
        series(
            format!("T = {steps} step{}", if *steps > 1 { "s" } else { "" }),
            COLORS[i % COLORS.len()],
            pts,
            false,
        )?;
    }
    let rf: Vec<(f64, f64, f64)> = data
        .rf
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (*k as f64 / 1e6, mean_std(v).0, mean_std(v).1))
        .collect();
    if !rf.is_empty() {
        series("random features (W0)".into(), RGBColor(90, 90, 90), rf, true)?;
    }
    let hline = |chart: &mut ChartContext<'_, DB, _>, y: f64, label: String, color: RGBColor| -> anyhow::Result<()> {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(xmin - pad, y), (xmax + pad, y)],
                4,
                4,
                color.stroke_width(1),
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1)));
        Ok(())
    };
    if let Some(lk) = data.linear_kernel {
        hline(
            &mut chart,
            lk,
            format!("linear kernel (theory) {lk:.4}"),
            RGBColor(0, 0, 0),
        )?;
    }
    hline(
        &mut chart,
        data.second_moment,
        format!("E[y²] {:.4}", data.second_moment),
        RGBColor(170, 170, 170),
    )?;
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

fn draw_cosines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[CosinePanel],
    mu1: &Option<Vec<f64>>,
    title: &str,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 20))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        let mut chart = ChartBuilder::on(area)
            .caption(format!("step {}", panel.step), (FONT, 17))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(45)
            .build_cartesian_2d(-1.1f64..1.1f64, -1.1f64..1.1f64)?;
        chart
            .configure_mesh()
            .x_desc("cos(G_i, w*1)")
            .y_desc("cos(G_i, w*2)")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 14))
            .max_light_lines(2)
            .draw()?;
        let circle: Vec<(f64, f64)> = (0..=200)
            .map(|i| {
                let a = i as f64 / 200.0 * std::f64::consts::TAU;
                (a.cos(), a.sin())
            })
            .collect();
        chart.draw_series(LineSeries::new(circle, RGBColor(150, 150, 150).stroke_width(1)))?;
        if let Some(m) = mu1 {
            let n = (m[0] * m[0] + m[1] * m[1]).sqrt();
            if n > 1e-12 {
                let (ux, uy) = (m[0] / n, m[1] / n);
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(-ux, -uy), (ux, uy)],
                        6,
                        4,
                        RGBColor(0, 0, 0).stroke_width(2),
                    ))?
                    .label(format!(
                        "theory: line of mu1 (slope {:.3})",
                        if ux.abs() > 1e-12 { uy / ux } else { f64::INFINITY }
                    ))
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
            }
        }
        chart
            .draw_series(
                panel
                    .points
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, COLORS[0].filled())),
            )?
            .label("G_i")
            .legend(|(x, y)| Circle::new((x + 10, y), 3, COLORS[0].filled()));
        chart
            .draw_series(
                panel
                    .perp
                    .iter()
                    .map(|&(x, y)| TriangleMarker::new((x, y), 3, COLORS[1].filled())),
            )?
            .label("G_i⊥ (orthogonal to w_i)")
            .legend(|(x, y)| TriangleMarker::new((x + 10, y), 3, COLORS[1].filled()));
        chart
            .configure_series_labels()
            .label_font((FONT, 11))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn draw_overlaps<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[OverlapPanel],
    title: &str,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 20))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        let steps = panel.measured.first().map_or(0, |m| m.len());
        let mut chart = ChartBuilder::on(area)
            .caption(format!("activation {}", panel.activation), (FONT, 17))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.5f64..(steps as f64 + 0.5), 0.0f64..1.0f64)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("mean |cos(w_i, w*_k)|")
            .x_labels(steps.max(2))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .draw()?;
        for (k, m) in panel.measured.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let pts: Vec<(f64, f64)> = m.iter().enumerate().map(|(t, v)| (t as f64 + 1.0, v.0)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(format!("w*{} measured", k + 1))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(m.iter().enumerate().map(|(t, v)| {
                ErrorBar::new_vertical(t as f64 + 1.0, v.0 - v.1, v.0, v.0 + v.1, color.stroke_width(1), 6)
            }))?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            if let Some(pred) = &panel.predicted {
                let pp: Vec<(f64, f64)> = pred[k].iter().enumerate().map(|(t, v)| (t as f64 + 1.0, *v)).collect();
                chart
                    .draw_series(DashedLineSeries::new(pp.clone(), 6, 4, color.stroke_width(2)))?
                    .label(format!("w*{} theory", k + 1))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1)));
                // Mark the predicted subspace: hollow squares where the theory predicts learning.
                chart.draw_series(pp.iter().filter(|p| p.1 > 1e-6).map(|&p| {
                    Rectangle::new(
                        [(p.0 - 0.06, p.1 - 0.015), (p.0 + 0.06, p.1 + 0.015)],
                        color.stroke_width(1),
                    )
                }))?;
            }
        }
        let rl = panel.random_level;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.5, rl), (steps as f64 + 0.5, rl)],
                3,
                3,
                RGBColor(120, 120, 120).stroke_width(1),
            ))?
            .label(format!("random level {rl:.3}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(120, 120, 120).stroke_width(1)));
        chart
            .configure_series_labels()
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// A figure with its data, ready to draw on any backend.
enum Prepared {
    Stairway(StairwayData),
    Cosines(Vec<CosinePanel>, Option<Vec<f64>>, String),
    Overlaps(Vec<OverlapPanel>, String),
}

impl Prepared {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        match self {
            Prepared::Stairway(d) => draw_stairway(root, d),
            Prepared::Cosines(p, m, t) => draw_cosines(root, p, m, t),
            Prepared::Overlaps(p, t) => draw_overlaps(root, p, t),
        }
    }

    fn size(&self) -> (u32, u32) {
        match self {
            Prepared::Stairway(_) => (1000, 650),
            Prepared::Cosines(p, _, _) => ((420 * p.len().max(1) as u32).max(600), 470),
            Prepared::Overlaps(p, _) => (560 * p.len().max(1) as u32, 500),
        }
    }
}

fn render(path: &Path, fig: &Prepared) -> anyhow::Result<()> {
    register_font();
    let size = fig.size();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    // Draw to a temporary file and rename: no partial figure on failure.
    let tmp = path.with_extension(format!("tmp-{}.{ext}", std::process::id()));
    let result = match ext.as_str() {
        "svg" => {
            let root = SVGBackend::new(&tmp, size).into_drawing_area();
            let r = fig.draw(&root);
            drop(root);
            r
        }
        "png" => {
            let root = BitMapBackend::new(&tmp, size).into_drawing_area();
            let r = fig.draw(&root);
            drop(root);
            r
        }
        other => bail!("the figure file must end in .svg or .png, but ends in '.{other}'"),
    };
    match result.and_then(|_| std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Draws `figure` from records into each of `outs` (.svg or .png).
pub fn plot_records(figure: Figure, records: &[Record], outs: &[&Path]) -> anyhow::Result<()> {
    let fig = match figure {
        Figure::Stairway => Prepared::Stairway(stairway_data(records)?),
        Figure::Cosines => {
            let (panels, mu1, title) = cosine_data(records)?;
            Prepared::Cosines(panels, mu1, title)
        }
        Figure::Overlaps => {
            let panels = overlap_data(records)?;
            let first = ok_records(records)[0];
            // The panels name what differs between them; the title only what they share.
            let title = if panels.len() > 1 && panels.iter().any(|p| p.activation.contains(", ")) {
                "overlaps".to_string()
            } else {
                format!(
                    "overlaps — {}, d = {}, n = {}",
                    first
                        .config
                        .target
                        .preset
                        .as_deref()
                        .unwrap_or(first.config.target.expr.as_deref().unwrap_or("")),
                    first.config.network.d,
                    first.steps[0].n
                )
            };
            Prepared::Overlaps(panels, title)
        }
    };
    for out in outs {
        render(out, &fig)?;
    }
    Ok(())
}

/// `giantstep plot`: reads a record file and draws.
pub fn cmd_plot(figure: Figure, records_path: &Path, out: &Path) -> anyhow::Result<()> {
    let (records, _) = read_records(records_path)?;
    plot_records(figure, &records, &[out])
}
