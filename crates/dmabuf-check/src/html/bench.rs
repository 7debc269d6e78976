//! The benchmark's charts, as SVG: the bytes each policy and the oracle maintain per
//! workload, and the two ratios against their targets. `dmabuf bench --svg` writes the
//! first; the HTML report shows both with the table.
//!
//! Both are on log scales whose floor is the smallest value shown (at most 1 B for
//! bytes), so a policy that maintains 64 bytes is a bar, not the baseline; a zero is
//! written as `0` on the baseline, an infinite ratio as `∞` at the top.

use std::fmt::Write as _;

use crate::bench::{LINUX_OVER_MINIMAL_MIN, MINIMAL_OVER_ORACLE_MAX, Suite, WorkloadResult};

use super::escape;

const COLORS: [(&str, &str); 3] = [("linux", "#d9534f"), ("minimal", "#2b7bba"), ("oracle", "#5cb85c")];

/// A log axis from `lo` to `hi` (powers of ten) over `h` pixels below `top`.
struct LogAxis {
    lo: f64,
    hi: f64,
    top: f64,
    h: f64,
}

impl LogAxis {
    fn new(min: f64, max: f64, top: f64, h: f64) -> LogAxis {
        let lo = 10f64.powf(min.max(1e-9).log10().floor());
        let mut hi = 10f64.powf(max.max(min * 10.0).log10().ceil());
        if hi <= lo {
            hi = lo * 10.0;
        }
        LogAxis { lo, hi, top, h }
    }

    fn y(&self, v: f64) -> f64 {
        let v = v.clamp(self.lo, self.hi);
        self.top + self.h - (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10()) * self.h
    }

    fn decades(&self) -> Vec<f64> {
        let mut out = Vec::new();
        let mut d = self.lo;
        while d <= self.hi * 1.001 {
            out.push(d);
            d *= 10.0;
        }
        out
    }
}

/// A power of ten of bytes, in SI units (the chart's decades).
fn si(b: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let (mut v, mut i) = (b, 0);
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.0} {}", units[i])
}

fn header(s: &mut String, width: f64, height: f64, title: &str, id: &str) {
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{id}\" class=\"chart\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(s, "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{}</text>", escape(title));
}

/// Where a chart's plot lies: its left and top edges, its width and height.
#[derive(Clone, Copy)]
struct Plot {
    left: f64,
    top: f64,
    w: f64,
    h: f64,
}

/// The axes' titles, the y one turned along its axis, the x one at `x_y`.
fn axis_titles(s: &mut String, p: Plot, y_title: &str, x_title: &str, x_y: f64) {
    let Plot { left, top, w: plot_w, h: plot_h } = p;
    let (yx, yy) = (16.0, top + plot_h / 2.0);
    let _ = writeln!(
        s,
        "<text class=\"axis-title\" x=\"{yx}\" y=\"{yy:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 {yx} {yy:.1})\">{}</text>",
        escape(y_title)
    );
    let _ = writeln!(
        s,
        "<text class=\"axis-title\" x=\"{:.1}\" y=\"{x_y:.1}\" text-anchor=\"middle\">{}</text>",
        left + plot_w / 2.0,
        escape(x_title)
    );
}

/// Bytes maintained per workload: Linux, Minimal and the oracle, on a log scale.
pub fn bytes_chart(suite: &Suite, results: &[WorkloadResult]) -> String {
    let (bar, gap, left, top, plot_h) = (14.0, 18.0, 80.0, 56.0, 320.0);
    let group = 3.0 * bar + gap;
    let plot_w = (group * results.len() as f64).max(200.0);
    let width = left + plot_w + 200.0;
    let height = top + plot_h + 250.0;
    let values: Vec<u64> = results.iter().flat_map(|r| [r.linux.bytes, r.minimal.bytes, r.oracle.bytes]).collect();
    let min = values.iter().copied().filter(|&b| b > 0).min().unwrap_or(1).min(1) as f64;
    let max = values.iter().copied().max().unwrap_or(1) as f64;
    let axis = LogAxis::new(min, max, top, plot_h);
    let mut s = String::new();
    header(
        &mut s,
        width,
        height,
        &format!(
            "Cache maintenance and bounce bytes per pipeline ({} frames of {}x{} after a warm-up frame)",
            suite.frames, suite.width, suite.height
        ),
        "bytes-chart",
    );
    for (i, (name, color)) in COLORS.iter().enumerate() {
        let x = left + i as f64 * 90.0;
        let _ = writeln!(s, "<rect x=\"{x}\" y=\"30\" width=\"10\" height=\"10\" fill=\"{color}\"/>");
        let _ = writeln!(s, "<text x=\"{}\" y=\"39\">{name}</text>", x + 14.0);
    }
    for d in axis.decades() {
        let yy = axis.y(d);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>",
            left + plot_w
        );
        let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>", left - 6.0, yy + 4.0, si(d));
    }
    let base = top + plot_h;
    for (i, r) in results.iter().enumerate() {
        let x0 = left + gap / 2.0 + i as f64 * group;
        for (j, (c, (name, color))) in [r.linux, r.minimal, r.oracle].iter().zip(COLORS).enumerate() {
            let x = x0 + j as f64 * bar;
            let tip = format!("{} {name}: {} bytes, {} ops, {} cycles", r.name, c.bytes, c.ops, c.cycles);
            if c.bytes == 0 {
                let _ = writeln!(
                    s,
                    "<text class=\"zero\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\" fill=\"{color}\">0<title>{}</title></text>",
                    x + bar / 2.0,
                    base - 3.0,
                    escape(&tip)
                );
                continue;
            }
            // A value at the floor still gets a visible bar.
            let yy = axis.y(c.bytes as f64).min(base - 2.0);
            let _ = writeln!(
                s,
                "<rect class=\"bar\" x=\"{x:.1}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{}</title></rect>",
                bar - 1.0,
                base - yy,
                escape(&tip)
            );
        }
        let lx = x0 + 1.5 * bar;
        let ly = base + 10.0;
        let _ = writeln!(
            s,
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" transform=\"rotate(45 {lx:.1} {ly:.1})\">{} ({})</text>",
            escape(&r.name),
            escape(&r.platform)
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{base:.1}\" y2=\"{base:.1}\" stroke=\"black\"/>",
        left + plot_w
    );
    let _ = writeln!(s, "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{base:.1}\" stroke=\"black\"/>");
    axis_titles(
        &mut s,
        Plot { left, top, w: plot_w, h: plot_h },
        "bytes maintained and bounced (log scale)",
        "workload (platform)",
        height - 10.0,
    );
    s.push_str("</svg>\n");
    s
}

/// The ratios per workload, Linux over Minimal and Minimal over the oracle, with their
/// targets as lines: Linux at least 10x Minimal on partial-access workloads, Minimal
/// within 1.1x of the oracle.
pub fn ratio_chart(results: &[WorkloadResult]) -> String {
    let (bar, gap, left, top, plot_h) = (16.0, 18.0, 80.0, 56.0, 260.0);
    let group = 2.0 * bar + gap;
    let plot_w = (group * results.len() as f64).max(200.0);
    let width = left + plot_w + 220.0;
    let height = top + plot_h + 250.0;
    let finite: Vec<f64> = results
        .iter()
        .flat_map(|r| [r.linux_over_minimal, r.minimal_over_oracle])
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    let min = finite.iter().copied().fold(1.0f64, f64::min);
    let max = finite.iter().copied().fold(LINUX_OVER_MINIMAL_MIN * 10.0, f64::max);
    let axis = LogAxis::new(min.min(0.1), max, top, plot_h);
    let colors = [("linux / minimal", "#d9534f"), ("minimal / oracle", "#2b7bba")];
    let mut s = String::new();
    header(&mut s, width, height, "Ratios of bytes, against their targets", "ratio-chart");
    for (i, (name, color)) in colors.iter().enumerate() {
        let x = left + i as f64 * 130.0;
        let _ = writeln!(s, "<rect x=\"{x}\" y=\"30\" width=\"10\" height=\"10\" fill=\"{color}\"/>");
        let _ = writeln!(s, "<text x=\"{}\" y=\"39\">{name}</text>", x + 14.0);
    }
    for d in axis.decades() {
        let yy = axis.y(d);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>",
            left + plot_w
        );
        let label = if d >= 1.0 { format!("{d:.0}x") } else { format!("{d}x") };
        let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>", left - 6.0, yy + 4.0);
    }
    let one = axis.y(1.0);
    for (value, color, what) in [
        (LINUX_OVER_MINIMAL_MIN, "#d9534f", "target: linux >= 10x minimal (partial access)"),
        (MINIMAL_OVER_ORACLE_MAX, "#2b7bba", "target: minimal <= 1.1x oracle"),
    ] {
        let yy = axis.y(value);
        let _ = writeln!(
            s,
            "<line class=\"target\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"{color}\" stroke-dasharray=\"6 4\"/>",
            left + plot_w
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{}</text>",
            left + plot_w + 6.0,
            yy + 4.0,
            escape(what)
        );
    }
    for (i, r) in results.iter().enumerate() {
        let x0 = left + gap / 2.0 + i as f64 * group;
        for (j, (v, (name, color))) in [r.linux_over_minimal, r.minimal_over_oracle].iter().zip(colors).enumerate() {
            let x = x0 + j as f64 * bar;
            let tip = format!(
                "{} on {}: {name} = {}",
                r.name,
                r.platform,
                if v.is_finite() { format!("{v:.2}x") } else { "infinite".into() }
            );
            if !v.is_finite() {
                let _ = writeln!(
                    s,
                    "<text class=\"inf\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{color}\">∞<title>{}</title></text>",
                    x + bar / 2.0,
                    top + 10.0,
                    escape(&tip)
                );
                continue;
            }
            // Bars grow from 1x: up for more, down for less.
            let yy = axis.y(*v);
            let (y0, h) = if yy <= one { (yy, (one - yy).max(2.0)) } else { (one, (yy - one).max(2.0)) };
            let _ = writeln!(
                s,
                "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y0:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{color}\"><title>{}</title></rect>",
                bar - 1.0,
                escape(&tip)
            );
        }
        let lx = x0 + bar;
        let ly = top + plot_h + 10.0;
        let _ = writeln!(
            s,
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" transform=\"rotate(45 {lx:.1} {ly:.1})\">{} ({}){}</text>",
            escape(&r.name),
            escape(&r.platform),
            if r.partial { " *" } else { "" }
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{one:.1}\" y2=\"{one:.1}\" stroke=\"black\"/>",
        left + plot_w
    );
    let _ = writeln!(s, "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"black\"/>", top + plot_h);
    axis_titles(
        &mut s,
        Plot { left, top, w: plot_w, h: plot_h },
        "ratio of bytes (log scale)",
        "workload (platform); * partial access",
        height - 10.0,
    );
    s.push_str("</svg>\n");
    s
}

/// The table under the charts, as HTML.
pub fn table(results: &[WorkloadResult]) -> String {
    let mut s = String::from(
        "<table class=\"bench\"><thead><tr><th>workload</th><th>platform</th><th>linux B</th><th>minimal B</th><th>oracle B</th><th>linux / minimal</th><th>minimal / oracle</th><th>findings</th></tr></thead><tbody>\n",
    );
    let ratio = |x: f64| if x.is_finite() { format!("{x:.2}x") } else { "∞".into() };
    for r in results {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.name),
            escape(&r.platform),
            r.linux.bytes,
            r.minimal.bytes,
            r.oracle.bytes,
            ratio(r.linux_over_minimal),
            ratio(r.minimal_over_oracle),
            r.findings.linux + r.findings.minimal
        );
    }
    s.push_str("</tbody></table>\n");
    s
}
