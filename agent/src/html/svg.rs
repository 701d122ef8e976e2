//! A layout-rs render backend that writes SVG for the HTML report: the positions come from
//! layout-rs's layered layout; the look comes from the page's CSS classes (carried in each
//! shape's `properties`), so the SVG holds no colours or fonts of its own, and every node and
//! edge is a `<g>` with the data attributes the page's tests read.

use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::Point;
use layout::core::style::StyleAttr;

use super::esc;

/// Collects the draw calls of one graph.
pub struct SvgCanvas {
    /// Unique per page: marker ids must not collide between the page's graphs.
    prefix: String,
    body: String,
    /// A node's `<g>` stays open until the next shape, so that its label joins it.
    open_group: bool,
    max: Point,
}

impl SvgCanvas {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            body: String::new(),
            open_group: false,
            max: Point::zero(),
        }
    }

    fn grow(&mut self, p: Point) {
        self.max.x = self.max.x.max(p.x);
        self.max.y = self.max.y.max(p.y);
    }

    fn close_group(&mut self) {
        if self.open_group {
            self.body.push_str("</g>\n");
            self.open_group = false;
        }
    }

    fn marker(&self, end: &str, cycle: bool) -> String {
        format!(
            "url(#{}-{end}{})",
            self.prefix,
            if cycle { "-cycle" } else { "" }
        )
    }

    /// The finished `<svg>` element.
    pub fn finish(mut self, title: &str) -> String {
        self.close_group();
        let (w, h) = (self.max.x + 10.0, self.max.y + 10.0);
        let p = &self.prefix;
        let mut defs = String::new();
        for (suffix, class) in [("", "arrowhead"), ("-cycle", "arrowhead cycle")] {
            defs.push_str(&format!(
                "<marker id=\"{p}-end{suffix}\" class=\"{class}\" markerWidth=\"10\" \
                 markerHeight=\"7\" refX=\"10\" refY=\"3.5\" orient=\"auto\">\
                 <polygon points=\"0 0, 10 3.5, 0 7\"/></marker>\
                 <marker id=\"{p}-start{suffix}\" class=\"{class}\" markerWidth=\"10\" \
                 markerHeight=\"7\" refX=\"0\" refY=\"3.5\" orient=\"auto\">\
                 <polygon points=\"10 0, 10 7, 0 3.5\"/></marker>"
            ));
        }
        format!(
            "<svg class=\"waitgraph\" id=\"{p}\" xmlns=\"http://www.w3.org/2000/svg\" \
             width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\">\
             <title>{}</title><defs>{defs}</defs>\n{}</svg>",
            esc(title),
            self.body
        )
    }
}

/// An edge's `data-rel` (graph.rs writes it).
fn relation(props: &str) -> Option<&str> {
    let at = props.find("data-rel=\"")? + "data-rel=\"".len();
    let len = props[at..].find('"')?;
    Some(&props[at..at + len])
}

/// About the middle of a path of layout-rs's form: an end point halfway along a path through
/// several points, else the middle of the one cubic Bézier segment.
fn midpoint(path: &[(Point, Point)]) -> Point {
    if path.len() >= 3 {
        return path[path.len() / 2].1;
    }
    let (p0, c1, c2, p3) = (path[0].0, path[0].1, path[1].0, path[1].1);
    p0.add(c1.scale(3.0))
        .add(c2.scale(3.0))
        .add(p3)
        .scale(1.0 / 8.0)
}

/// Whether a shape's properties mark it part of a cycle (the arrowheads follow the edge's colour).
fn in_cycle(props: &str) -> bool {
    props.contains("data-cycle=\"true\"")
}

impl RenderBackend for SvgCanvas {
    fn draw_rect(
        &mut self,
        xy: Point,
        size: Point,
        look: &StyleAttr,
        properties: Option<String>,
        _clip: Option<ClipHandle>,
    ) {
        self.close_group();
        self.grow(xy.add(size));
        if let Some(props) = properties {
            self.body.push_str(&format!("<g {props}>"));
            self.open_group = true;
        }
        self.body.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"{}\"/>",
            xy.x,
            xy.y,
            size.x,
            size.y,
            look.rounded.max(6)
        ));
    }

    fn draw_line(
        &mut self,
        start: Point,
        stop: Point,
        _look: &StyleAttr,
        properties: Option<String>,
    ) {
        self.close_group();
        self.grow(start);
        self.grow(stop);
        self.body.push_str(&format!(
            "<line {} x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>",
            properties.unwrap_or_default(),
            start.x,
            start.y,
            stop.x,
            stop.y
        ));
    }

    fn draw_circle(
        &mut self,
        xy: Point,
        size: Point,
        _look: &StyleAttr,
        properties: Option<String>,
    ) {
        self.close_group();
        self.grow(xy.add(size.scale(0.5)));
        if let Some(props) = properties {
            self.body.push_str(&format!("<g {props}>"));
            self.open_group = true;
        }
        self.body.push_str(&format!(
            "<ellipse cx=\"{:.1}\" cy=\"{:.1}\" rx=\"{:.1}\" ry=\"{:.1}\"/>",
            xy.x,
            xy.y,
            size.x / 2.0,
            size.y / 2.0
        ));
    }

    fn draw_text(&mut self, xy: Point, text: &str, look: &StyleAttr) {
        // Centred on `xy`, one tspan a line (layout-rs sizes shapes for the lines of the label).
        let lines: Vec<&str> = text.lines().collect();
        let fs = look.font_size as f64;
        let top = xy.y - (lines.len() as f64 - 1.0) * fs * 0.6;
        let mut spans = String::new();
        for (i, line) in lines.iter().enumerate() {
            spans.push_str(&format!(
                "<tspan x=\"{:.1}\" y=\"{:.1}\">{}</tspan>",
                xy.x,
                top + i as f64 * fs * 1.2,
                esc(line)
            ));
        }
        self.body.push_str(&format!(
            "<text class=\"label\" text-anchor=\"middle\" dominant-baseline=\"middle\" \
             font-size=\"{}\">{spans}</text>",
            look.font_size
        ));
        // A shape has one label: what follows is not part of its group (an edge label is
        // drawn on its own, by the connector node layout-rs adds for it).
        self.close_group();
    }

    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        dashed: bool,
        head: (bool, bool),
        look: &StyleAttr,
        properties: Option<String>,
        text: &str,
    ) {
        self.close_group();
        if path.len() < 2 {
            return;
        }
        for (a, b) in path {
            self.grow(*a);
            self.grow(*b);
        }
        // The path is [(point, control)...]: the first pair is the exit vector of the first
        // point, the rest entry vectors (layout-rs, backends/svg.rs).
        let mut d = format!(
            "M {:.1} {:.1} C {:.1} {:.1}, {:.1} {:.1}, {:.1} {:.1}",
            path[0].0.x,
            path[0].0.y,
            path[0].1.x,
            path[0].1.y,
            path[1].0.x,
            path[1].0.y,
            path[1].1.x,
            path[1].1.y
        );
        for (a, b) in &path[2..] {
            d.push_str(&format!(" S {:.1} {:.1}, {:.1} {:.1}", a.x, a.y, b.x, b.y));
        }
        let props = properties.unwrap_or_default();
        let cycle = in_cycle(&props);
        let mut markers = String::new();
        if head.0 {
            markers.push_str(&format!(
                " marker-start=\"{}\"",
                self.marker("start", cycle)
            ));
        }
        if head.1 {
            markers.push_str(&format!(" marker-end=\"{}\"", self.marker("end", cycle)));
        }
        let dash = if dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        self.body.push_str(&format!(
            "<g {props}><path d=\"{d}\" fill=\"none\"{dash}{markers}/>"
        ));
        // The label: layout-rs would route a labelled edge through a connector node, which
        // its placer cannot always place (an assertion in its edge fixer); the edges are laid
        // out unlabelled and labelled here, beside the middle of the path.
        let label = if text.is_empty() {
            relation(&props).filter(|r| *r != "waits")
        } else {
            Some(text)
        };
        if let Some(label) = label {
            let mid = midpoint(path);
            self.grow(Point::new(mid.x + 8.0 + 7.0 * label.len() as f64, mid.y));
            self.body.push_str(&format!(
                "<text class=\"edge-label\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"{}\">{}</text>",
                mid.x + 6.0,
                mid.y,
                look.font_size,
                esc(label)
            ));
        }
        self.body.push_str("</g>\n");
    }

    fn create_clip(&mut self, _xy: Point, _size: Point, _rounded_px: usize) -> ClipHandle {
        // Only record shapes clip; the report draws none.
        0
    }
}
