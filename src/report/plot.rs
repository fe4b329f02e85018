//! Draws the report's charts with plotters, as SVG and PNG: layout and ink only; every number arrives already computed in a [`Chart`].
//!
//! Text is measured and rasterised with the bundled DejaVu Sans, so a machine
//! without fonts draws the same pixels. Fills are grey levels chosen to stay
//! distinct when printed in black and white, and every encoding is spelled out
//! on the chart itself.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::charts::{BarGroup, CacheRow, CellOutcome, Chart, Figure, Phase, SizeBar, StackedBar, Timeline};

/// Docs width, in pixels.
pub const WIDTH: u32 = 800;
const MARGIN: i32 = 16;
const TITLE_TOP: i32 = 12;
const ROW: i32 = 22;
const BAR: i32 = 14;
const TEXT: f64 = 13.0;
const SMALL: f64 = 12.0;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("failed to draw chart {chart}: {message}")]
    Draw { chart: String, message: String },
    #[error("failed to encode chart {chart} as PNG: {message}")]
    Encode { chart: String, message: String },
}

/// The chart as an SVG document.
pub fn svg(chart: &Chart) -> Result<String, PlotError> {
    let layout = Layout::of(chart);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, layout.height)).into_drawing_area();
        draw(&root, chart, &layout, TextMode::Svg).map_err(|message| PlotError::Draw { chart: chart.stem.clone(), message })?;
        root.present().map_err(|e| PlotError::Draw { chart: chart.stem.clone(), message: e.to_string() })?;
    }
    Ok(out)
}

/// The chart as a PNG file (RGB, [`WIDTH`] pixels wide).
pub fn png(chart: &Chart) -> Result<Vec<u8>, PlotError> {
    let layout = Layout::of(chart);
    let mut pixels = vec![0u8; (WIDTH * layout.height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, layout.height)).into_drawing_area();
        draw(&root, chart, &layout, TextMode::Raster).map_err(|message| PlotError::Draw { chart: chart.stem.clone(), message })?;
        root.present().map_err(|e| PlotError::Draw { chart: chart.stem.clone(), message: e.to_string() })?;
    }
    let encode_error = |e: png::EncodingError| PlotError::Encode { chart: chart.stem.clone(), message: e.to_string() };
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, WIDTH, layout.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(encode_error)?;
        writer.write_image_data(&pixels).map_err(encode_error)?;
    }
    Ok(bytes)
}

/// The chart's pixel size.
pub fn size(chart: &Chart) -> (u32, u32) {
    (WIDTH, Layout::of(chart).height)
}

static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");
static FONTS: Once = Once::new();

fn register_fonts() {
    FONTS.call_once(|| {
        // The bytes are compiled in and known to parse; a failure here would be a broken build.
        let regular = plotters::style::register_font("sans-serif", FontStyle::Normal, REGULAR);
        let bold = plotters::style::register_font("sans-serif", FontStyle::Bold, BOLD);
        assert!(regular.is_ok() && bold.is_ok(), "the bundled DejaVu fonts parse");
    });
}

fn font(size: f64, bold: bool) -> FontDesc<'static> {
    register_fonts();
    FontDesc::new(FontFamily::SansSerif, size, if bold { FontStyle::Bold } else { FontStyle::Normal })
}

/// Width of the text in pixels.
fn measure(text: &str, size: f64, bold: bool) -> i32 {
    font(size, bold).box_size(text).map(|(w, _)| w as i32).unwrap_or((text.chars().count() as f64 * size * 0.6) as i32)
}

fn grey(level: u8) -> RGBColor {
    RGBColor(level, level, level)
}

const INK: RGBColor = RGBColor(20, 20, 20);
const GRID: RGBColor = RGBColor(225, 225, 225);

fn text_style(size: f64, bold: bool, color: RGBColor, h: HPos) -> TextStyle<'static> {
    font(size, bold).color(&color).pos(Pos::new(h, VPos::Center))
}

/// Where everything goes; computed before drawing so the canvas height fits the content.
struct Layout {
    height: u32,
    /// Top of the plotting area (below the title, subtitle and key).
    top: i32,
    /// Left edge of the plotting area (right of the row labels).
    left: i32,
    /// Right edge of the plotting area (left of the space kept for value labels).
    right: i32,
    /// Cache map only: each row's lines of cells (cell index ranges), with x positions.
    cache_lines: Vec<Vec<Vec<(usize, i32, i32)>>>,
}

const SUBTITLE_GAP: i32 = 20;

impl Layout {
    fn of(chart: &Chart) -> Layout {
        let head = TITLE_TOP + 26 + SUBTITLE_GAP + 8;
        let axis = 56;
        match &chart.figure {
            Figure::RebuildTimes(groups) => {
                // Headings sit on their own rows and may run over the plotting area (on a white ground).
                let labels = groups.iter().flat_map(|g| g.bars.iter().map(|b| measure(&b.label, TEXT, false) + 16));
                let left = MARGIN + labels.max().unwrap_or(100).min(320) + 10;
                let rows: i32 = groups.iter().map(|g| 1 + g.bars.len() as i32).sum();
                Layout { height: (head + rows * ROW + 6 + axis) as u32, top: head, left, right: WIDTH as i32 - MARGIN - 120, cache_lines: vec![] }
            }
            Figure::TimeSplit(bars) => {
                let head = head + ROW;
                let left = MARGIN + bars.iter().map(|b| measure(&b.label, TEXT, false)).max().unwrap_or(100).min(340) + 12;
                Layout { height: (head + bars.len() as i32 * ROW + 6 + axis) as u32, top: head, left, right: WIDTH as i32 - MARGIN - 110, cache_lines: vec![] }
            }
            Figure::ImageSizes(bars) => {
                let left = MARGIN + bars.iter().map(|b| measure(&b.variant, TEXT, false)).max().unwrap_or(100).min(300) + 12;
                let note = bars.iter().map(|b| measure(&size_note(b), SMALL, false)).max().unwrap_or(100);
                let right = (WIDTH as i32 - MARGIN - note - 10).max(left + 200);
                Layout { height: (head + bars.len() as i32 * ROW + 6 + axis) as u32, top: head, left, right, cache_lines: vec![] }
            }
            Figure::Timeline(t) => {
                let left = MARGIN + t.spans.iter().map(|s| measure(&span_label(&s.stage, &s.instruction), SMALL, false)).max().unwrap_or(100).min(360) + 12;
                Layout { height: (head + t.spans.len() as i32 * ROW + 6 + axis) as u32, top: head, left, right: WIDTH as i32 - MARGIN - 70, cache_lines: vec![] }
            }
            Figure::CacheMap(rows) => {
                let head = head + ROW;
                let (left, right) = (MARGIN, WIDTH as i32 - MARGIN);
                let mut y = head;
                let mut cache_lines = Vec::new();
                for row in rows {
                    let lines = wrap_cells(row, left + 12, right);
                    y += ROW + lines.len() as i32 * (ROW + 4) + 8;
                    cache_lines.push(lines);
                }
                Layout { height: (y + 8) as u32, top: head, left, right, cache_lines }
            }
        }
    }
}

/// Lays a row's cells left to right, wrapping to a new line when one would cross `right`.
fn wrap_cells(row: &CacheRow, left: i32, right: i32) -> Vec<Vec<(usize, i32, i32)>> {
    let mut lines: Vec<Vec<(usize, i32, i32)>> = vec![vec![]];
    let mut x = left;
    for (i, cell) in row.cells.iter().enumerate() {
        let w = measure(&cell.text, SMALL, false) + 12;
        if x + w > right && x > left {
            lines.push(vec![]);
            x = left;
        }
        if let Some(line) = lines.last_mut() {
            line.push((i, x, x + w));
        }
        x += w + 4;
    }
    lines
}

type Area<DB> = DrawingArea<DB, Shift>;

fn draw<DB: DrawingBackend>(root: &Area<DB>, chart: &Chart, layout: &Layout, text: TextMode) -> Result<(), String> {
    let pen = Pen { area: root, text };
    pen.run(|| root.fill(&WHITE))?;
    pen.text(&chart.title, (MARGIN, TITLE_TOP + 10), 18.0, true, INK, HPos::Left)?;
    pen.text(&subtitle(chart), (MARGIN, TITLE_TOP + 26 + 10), SMALL, false, grey(70), HPos::Left)?;
    match &chart.figure {
        Figure::RebuildTimes(groups) => rebuild_times(&pen, groups, layout),
        Figure::CacheMap(rows) => cache_map(&pen, rows, layout),
        Figure::TimeSplit(bars) => time_split(&pen, bars, layout),
        Figure::ImageSizes(bars) => image_sizes(&pen, bars, layout),
        Figure::Timeline(t) => timeline(&pen, t, layout),
    }
}

/// One line under the title saying how to read the chart.
fn subtitle(chart: &Chart) -> String {
    match &chart.figure {
        Figure::RebuildTimes(_) => "Bar: median wall time over repetitions; whisker: fastest to slowest; n = repetitions.".into(),
        Figure::CacheMap(_) => "Each box is one Dockerfile step, in order, in the build after the change.".into(),
        Figure::TimeSplit(_) => "Per variant, the repetition with the median rebuild time and its own cold baseline. Steps summed; wall time marked |.".into(),
        Figure::ImageSizes(_) => "Logarithmic scale. Dark bar: static binary; light bar: dynamic binary.".into(),
        Figure::Timeline(_) => "Each bar runs from a step's start to its end, as BuildKit reported them; overlapping bars ran in parallel.".into(),
    }
}

/// How text reaches the canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextMode {
    /// `<text>` elements, set by the viewer in its sans-serif font.
    Svg,
    /// Glyphs rasterised here from the bundled font, each at its own side bearing
    /// (plotters' ab_glyph text drops the bearings, which swallows spaces before `.`).
    Raster,
}

/// Draws onto the root area, turning plotters' backend-specific errors into text.
struct Pen<'a, DB: DrawingBackend> {
    area: &'a Area<DB>,
    text: TextMode,
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

impl<DB: DrawingBackend> Pen<'_, DB> {
    fn run(&self, f: impl FnOnce() -> DrawResult<DB>) -> Result<(), String> {
        f().map_err(|e| e.to_string())
    }

    fn rect(&self, (x0, y0): (i32, i32), (x1, y1): (i32, i32), fill: RGBColor, border: Option<RGBColor>) -> Result<(), String> {
        let x1 = x1.max(x0 + 1);
        self.run(|| {
            self.area.draw(&Rectangle::new([(x0, y0), (x1, y1)], fill.filled()))?;
            if let Some(b) = border {
                self.area.draw(&Rectangle::new([(x0, y0), (x1, y1)], b.stroke_width(1)))?;
            }
            Ok(())
        })
    }

    fn line(&self, points: Vec<(i32, i32)>, color: RGBColor, width: u32) -> Result<(), String> {
        self.run(|| self.area.draw(&PathElement::new(points, color.stroke_width(width))))
    }

    fn text(&self, text: &str, at: (i32, i32), size: f64, bold: bool, color: RGBColor, h: HPos) -> Result<(), String> {
        match self.text {
            TextMode::Svg => self.run(|| self.area.draw(&Text::new(text.to_string(), at, text_style(size, bold, color, h)))),
            TextMode::Raster => self.run(|| {
                for (x, y, coverage) in glyph_pixels(text, at, size, bold, h) {
                    self.area.draw_pixel((x, y), &color.mix(coverage as f64))?;
                }
                Ok(())
            }),
        }
    }
}

/// The pixels of a line of text and their coverage, laid out like [`measure`]: advances plus kerning,
/// vertically centred on `at`, anchored left, centre or right.
fn glyph_pixels(text: &str, at: (i32, i32), size: f64, bold: bool, h: HPos) -> Vec<(i32, i32, f32)> {
    use ab_glyph::{Font, FontRef, ScaleFont};
    let Ok(face) = FontRef::try_from_slice(if bold { BOLD } else { REGULAR }) else { return vec![] };
    let font = face.as_scaled(size as f32);
    let width = measure(text, size, bold) as f32;
    let mut caret = match h {
        HPos::Left => at.0 as f32,
        HPos::Center => at.0 as f32 - width / 2.0,
        HPos::Right => at.0 as f32 - width,
    };
    let baseline = at.1 as f32 + (font.ascent() + font.descent()) / 2.0;
    let mut pixels = Vec::new();
    let mut previous = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = previous {
            caret += font.kern(p, id);
        }
        previous = Some(id);
        let glyph = id.with_scale_and_position(font.scale(), ab_glyph::point(caret, baseline));
        if let Some(outline) = font.outline_glyph(glyph) {
            let bounds = outline.px_bounds();
            outline.draw(|x, y, coverage| {
                if coverage > 0.0 {
                    pixels.push((bounds.min.x as i32 + x as i32, bounds.min.y as i32 + y as i32, coverage.min(1.0)));
                }
            });
        }
        caret += font.h_advance(id);
    }
    pixels
}

/// A linear or logarithmic x axis over the plotting area.
struct Axis {
    left: i32,
    right: i32,
    min: f64,
    max: f64,
    log: bool,
}

impl Axis {
    fn px(&self, v: f64) -> i32 {
        let t = if self.log {
            (v.max(self.min).log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (v - self.min) / (self.max - self.min)
        };
        self.left + (t.clamp(0.0, 1.0) * (self.right - self.left) as f64).round() as i32
    }

    /// Tick values and their labels.
    fn ticks(&self, unit: &str) -> Vec<(f64, String)> {
        if self.log {
            let mut v = self.min;
            let mut out = Vec::new();
            while v <= self.max * 1.0001 {
                out.push((v, format!("{} {unit}", trim_number(v))));
                v *= 10.0;
            }
            return out;
        }
        let step = nice_step((self.max - self.min) / 6.0);
        let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let v = self.min + step * i as f64;
            if v > self.max + step * 1e-6 {
                break;
            }
            out.push((v, format!("{v:.decimals$}")));
            i += 1;
        }
        out
    }

    /// Gridlines from `top` to `bottom`, tick labels below, and the axis title.
    fn draw<DB: DrawingBackend>(&self, pen: &Pen<DB>, top: i32, bottom: i32, unit: &str, title: &str) -> Result<(), String> {
        for (v, label) in self.ticks(unit) {
            let x = self.px(v);
            pen.line(vec![(x, top), (x, bottom)], GRID, 1)?;
            pen.line(vec![(x, bottom), (x, bottom + 4)], INK, 1)?;
            pen.text(&label, (x, bottom + 14), SMALL, false, INK, HPos::Center)?;
        }
        pen.line(vec![(self.left, bottom), (self.right, bottom)], INK, 1)?;
        pen.text(title, ((self.left + self.right) / 2, bottom + 36), TEXT, false, INK, HPos::Center)
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|s| *s >= raw).unwrap_or(10.0 * power)
}

/// The smallest multiple of the tick step at or above `v`, so the axis ends on a labelled tick.
fn axis_max(v: f64) -> f64 {
    let v = if v > 0.0 { v } else { 1.0 };
    let step = nice_step(v / 6.0);
    (v / step).ceil() * step
}

fn trim_number(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

fn seconds(v: f64) -> String {
    if v < 0.1 {
        crate::analysis::stats::seconds_text(v)
    } else if v < 10.0 {
        format!("{v:.2} s")
    } else {
        format!("{v:.1} s")
    }
}

fn rebuild_times<DB: DrawingBackend>(pen: &Pen<DB>, groups: &[BarGroup], layout: &Layout) -> Result<(), String> {
    let max = groups.iter().flat_map(|g| g.bars.iter().map(|b| b.max)).fold(0.0, f64::max);
    let axis = Axis { left: layout.left, right: layout.right, min: 0.0, max: axis_max(max), log: false };
    let bottom = layout.height as i32 - 56;
    axis.draw(pen, layout.top, bottom, "", "wall time of the rebuild (s)")?;
    let mut y = layout.top;
    for g in groups {
        let width = measure(&g.heading, TEXT, true);
        pen.rect((MARGIN - 2, y + 3), (MARGIN + width + 6, y + ROW - 3), WHITE, None)?;
        pen.text(&g.heading, (MARGIN, y + ROW / 2), TEXT, true, INK, HPos::Left)?;
        y += ROW;
        for b in &g.bars {
            let mid = y + ROW / 2;
            pen.text(&b.label, (MARGIN + 16, mid), TEXT, false, INK, HPos::Left)?;
            pen.rect((axis.px(0.0), mid - BAR / 2), (axis.px(b.median), mid + BAR / 2), grey(150), Some(INK))?;
            let (lo, hi) = (axis.px(b.min), axis.px(b.max));
            if b.n > 1 {
                pen.line(vec![(lo, mid), (hi, mid)], INK, 1)?;
                pen.line(vec![(lo, mid - 4), (lo, mid + 4)], INK, 1)?;
                pen.line(vec![(hi, mid - 4), (hi, mid + 4)], INK, 1)?;
            }
            let note = if b.n > 1 { format!("{} (n={})", seconds(b.median), b.n) } else { format!("{} (n=1)", seconds(b.median)) };
            pen.text(&note, (hi.max(axis.px(b.median)) + 6, mid), SMALL, false, INK, HPos::Left)?;
            y += ROW;
        }
    }
    Ok(())
}

fn outcome_style(o: CellOutcome) -> (RGBColor, RGBColor, Option<RGBColor>) {
    // (fill, text, border)
    match o {
        CellOutcome::Miss => (grey(45), WHITE, None),
        CellOutcome::Hit => (WHITE, INK, Some(INK)),
        CellOutcome::Base => (grey(215), INK, None),
        CellOutcome::Varies => (grey(135), WHITE, None),
    }
}

fn outcome_label(o: CellOutcome) -> &'static str {
    match o {
        CellOutcome::Miss => "executed (cache miss)",
        CellOutcome::Hit => "cache hit",
        CellOutcome::Base => "base image (FROM)",
        CellOutcome::Varies => "differs between repetitions",
    }
}

/// A row of labelled swatches under the subtitle.
fn key<DB: DrawingBackend>(pen: &Pen<DB>, y: i32, items: &[(RGBColor, Option<RGBColor>, &str)]) -> Result<(), String> {
    let mut x = MARGIN;
    let mid = y + ROW / 2;
    for (fill, border, label) in items {
        pen.rect((x, mid - 6), (x + 18, mid + 6), *fill, Some(border.unwrap_or(*fill)))?;
        pen.text(label, (x + 24, mid), SMALL, false, INK, HPos::Left)?;
        x += 24 + measure(label, SMALL, false) + 16;
    }
    Ok(())
}

fn cache_map<DB: DrawingBackend>(pen: &Pen<DB>, rows: &[CacheRow], layout: &Layout) -> Result<(), String> {
    let outcomes = [CellOutcome::Miss, CellOutcome::Hit, CellOutcome::Base, CellOutcome::Varies];
    let present: Vec<(RGBColor, Option<RGBColor>, &str)> = outcomes
        .iter()
        .filter(|o| rows.iter().any(|r| r.cells.iter().any(|c| c.outcome == **o)))
        .map(|o| {
            let (fill, _, border) = outcome_style(*o);
            (fill, border, outcome_label(*o))
        })
        .collect();
    key(pen, layout.top - ROW - 4, &present)?;
    let mut y = layout.top;
    for (row, lines) in rows.iter().zip(&layout.cache_lines) {
        pen.text(&row.label, (MARGIN, y + ROW / 2), TEXT, true, INK, HPos::Left)?;
        y += ROW;
        for line in lines {
            for (i, x0, x1) in line {
                let cell = &row.cells[*i];
                let (fill, ink, border) = outcome_style(cell.outcome);
                pen.rect((*x0, y), (*x1, y + ROW), fill, border)?;
                pen.text(&cell.text, ((x0 + x1) / 2, y + ROW / 2), SMALL, false, ink, HPos::Center)?;
            }
            y += ROW + 4;
        }
        y += 8;
    }
    Ok(())
}

fn phase_style(p: Phase) -> (RGBColor, RGBColor) {
    // (fill, text): six grey levels, far enough apart to tell apart in print.
    match p {
        Phase::Setup => (grey(215), INK),
        Phase::Download => (grey(130), WHITE),
        Phase::Compile => (grey(40), WHITE),
        Phase::Copy => (grey(175), INK),
        Phase::Other => (WHITE, INK),
        Phase::Export => (grey(85), WHITE),
    }
}

fn time_split<DB: DrawingBackend>(pen: &Pen<DB>, bars: &[StackedBar], layout: &Layout) -> Result<(), String> {
    let items: Vec<(RGBColor, Option<RGBColor>, &str)> = Phase::ALL.iter().map(|p| (phase_style(*p).0, Some(INK), p.label())).collect();
    key(pen, layout.top - ROW - 4, &items)?;
    let max = bars.iter().map(|b| b.wall.max(b.segments.iter().map(|(_, s)| s).sum())).fold(0.0, f64::max);
    let axis = Axis { left: layout.left, right: layout.right, min: 0.0, max: axis_max(max), log: false };
    let bottom = layout.height as i32 - 56;
    axis.draw(pen, layout.top, bottom, "", "seconds")?;
    let mut y = layout.top;
    for b in bars {
        let mid = y + ROW / 2;
        pen.text(&b.label, (MARGIN, mid), TEXT, false, INK, HPos::Left)?;
        let mut at = 0.0;
        let mut end_px = axis.px(0.0);
        for (phase, secs) in b.segments.iter().filter(|(_, s)| *s > 0.0) {
            let (x0, x1) = (axis.px(at), axis.px(at + secs));
            let (fill, ink) = phase_style(*phase);
            pen.rect((x0, mid - BAR / 2 - 1), (x1, mid + BAR / 2 + 1), fill, Some(INK))?;
            let value = format!("{secs:.1}");
            if measure(&value, SMALL, false) + 6 < x1 - x0 {
                pen.text(&value, ((x0 + x1) / 2, mid), SMALL, false, ink, HPos::Center)?;
            }
            at += secs;
            end_px = end_px.max(x1);
        }
        let wall = axis.px(b.wall);
        pen.line(vec![(wall, mid - BAR / 2 - 4), (wall, mid + BAR / 2 + 4)], INK, 2)?;
        pen.text(&format!("wall {}", seconds(b.wall)), (end_px.max(wall) + 6, mid), SMALL, false, INK, HPos::Left)?;
        y += ROW;
    }
    Ok(())
}

fn size_note(b: &SizeBar) -> String {
    format!("{:.1} MB · {}", b.bytes as f64 / 1e6, b.marks())
}

fn image_sizes<DB: DrawingBackend>(pen: &Pen<DB>, bars: &[SizeBar], layout: &Layout) -> Result<(), String> {
    let mb: Vec<f64> = bars.iter().map(|b| (b.bytes as f64 / 1e6).max(0.001)).collect();
    let lo = 10f64.powf(mb.iter().copied().fold(f64::INFINITY, f64::min).log10().floor());
    let hi = 10f64.powf(mb.iter().copied().fold(0.0, f64::max).log10().ceil().max(lo.log10() + 1.0));
    let axis = Axis { left: layout.left, right: layout.right, min: lo, max: hi, log: true };
    let bottom = layout.height as i32 - 56;
    axis.draw(pen, layout.top, bottom, "MB", "image size (MB, 1 MB = 10⁶ bytes, logarithmic)")?;
    let mut y = layout.top;
    for (b, size) in bars.iter().zip(&mb) {
        let mid = y + ROW / 2;
        pen.text(&b.variant, (MARGIN, mid), TEXT, false, INK, HPos::Left)?;
        let fill = if b.is_static() { grey(45) } else { grey(205) };
        let x1 = axis.px(*size);
        pen.rect((axis.px(lo), mid - BAR / 2), (x1, mid + BAR / 2), fill, Some(INK))?;
        pen.text(&size_note(b), (x1 + 6, mid), SMALL, false, INK, HPos::Left)?;
        y += ROW;
    }
    Ok(())
}

fn span_label(stage: &str, instruction: &str) -> String {
    crate::report::charts::shorten(&format!("{stage} · {instruction}"), 48)
}

fn timeline<DB: DrawingBackend>(pen: &Pen<DB>, t: &Timeline, layout: &Layout) -> Result<(), String> {
    let max = t.spans.iter().map(|s| s.end).fold(t.wall, f64::max);
    let axis = Axis { left: layout.left, right: layout.right, min: 0.0, max: axis_max(max), log: false };
    let bottom = layout.height as i32 - 56;
    axis.draw(pen, layout.top, bottom, "", "seconds since the build call")?;
    let wall = axis.px(t.wall);
    pen.line(vec![(wall, layout.top), (wall, bottom)], INK, 1)?;
    pen.text("build returned", (wall - 4, layout.top - 6), SMALL, false, INK, HPos::Right)?;
    let mut stages: Vec<&str> = Vec::new();
    let mut y = layout.top;
    for s in &t.spans {
        if !stages.contains(&s.stage.as_str()) {
            if !stages.is_empty() {
                pen.line(vec![(MARGIN, y), (axis.right, y)], grey(160), 1)?;
            }
            stages.push(&s.stage);
        }
        let mid = y + ROW / 2;
        pen.text(&span_label(&s.stage, &s.instruction), (MARGIN, mid), SMALL, false, INK, HPos::Left)?;
        // The same fill as the cache maps' base-image cells: resolving a base image is neither a hit nor a miss.
        let fill = if s.base {
            grey(215)
        } else if s.cached {
            WHITE
        } else if stages.len() % 2 == 1 {
            grey(45)
        } else {
            grey(140)
        };
        let (x0, x1) = (axis.px(s.start), axis.px(s.end).max(axis.px(s.start) + 2));
        pen.rect((x0, mid - BAR / 2), (x1, mid + BAR / 2), fill, Some(INK))?;
        let note = if s.base {
            "base image".to_string()
        } else if s.cached {
            "reported cached".to_string()
        } else {
            seconds(s.end - s.start)
        };
        pen.text(&note, (x1 + 5, mid), SMALL, false, INK, HPos::Left)?;
        y += ROW;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(0.03), 0.05);
        assert_eq!(axis_max(19.2), 20.0);
    }

    #[test]
    fn the_bundled_font_measures_text() {
        let short = measure("ab", TEXT, false);
        let long = measure("abcdefgh", TEXT, false);
        assert!(short > 0 && long > 3 * short, "{short} {long}");
    }
}
