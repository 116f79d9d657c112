//! The lab's outputs: a table for people, JSON lines for scripts, an SVG bar chart for eyes.

use crate::harness::Row;
use std::fmt::Write as _;

/// A duration in ns, with a unit that keeps 3 significant digits readable.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 10.0 {
        format!("{ns:.2} ns")
    } else if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// The index of the fastest row that passes control (reference rows excluded).
pub fn fastest(rows: &[Row]) -> usize {
    (0..rows.len())
        .filter(|&i| rows[i].group != "reference")
        .min_by(|&a, &b| rows[a].stats.median.total_cmp(&rows[b].stats.median))
        .unwrap_or(0)
}

/// The table, what each row measures, and the notes.
pub fn table(rows: &[Row]) -> String {
    let f = fastest(rows);
    let base = rows[f].stats.median;
    let name_w = rows.iter().map(|r| r.name.chars().count()).max().unwrap_or(10).max(10);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>2}  {:<11} {:<name_w$} {:>10}  {:>21}  {:>9}  {:<10} note",
        "#", "group", "row", "median", "spread (min .. max)", "x fastest", "pin"
    );
    let mut group = "";
    for (i, r) in rows.iter().enumerate() {
        if r.group != group {
            if !group.is_empty() {
                out.push('\n');
            }
            group = &r.group;
        }
        let s = &r.stats;
        let spread = format!("{} .. {}", fmt_ns(s.min), fmt_ns(s.max));
        let _ = writeln!(
            out,
            "{:>2}  {:<11} {:<name_w$} {:>10}  {:>21}  {:>9.1}  {:<10} {}",
            i + 1,
            r.group,
            r.name,
            fmt_ns(s.median),
            spread,
            s.median / base,
            r.pin,
            if r.note.is_empty() { "" } else { "*" }
        );
    }
    let _ = writeln!(out, "\n'x fastest' is the median over row {}'s median.", f + 1);
    let _ = writeln!(
        out,
        "\nWhat each row measures (one operation; iterations per run in brackets):"
    );
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(out, "{:>3}. {}: {} [{}]", i + 1, r.name, r.how, r.stats.iters);
    }
    if rows.iter().any(|r| !r.note.is_empty()) {
        let _ = writeln!(out, "\nNotes (*):");
        for (i, r) in rows.iter().enumerate().filter(|(_, r)| !r.note.is_empty()) {
            let _ = writeln!(out, "{:>3}. {}: {}", i + 1, r.name, r.note);
        }
    }
    out
}

/// A decade's label: 1 ns, 10 ns, 100 ns, 1 us, ...
fn axis_label(v: f64) -> String {
    let (x, unit) = match v {
        v if v < 1e3 => (v, "ns"),
        v if v < 1e6 => (v / 1e3, "us"),
        v => (v / 1e6, "ms"),
    };
    if x < 1.0 {
        format!("{x} {unit}")
    } else {
        format!("{x:.0} {unit}")
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(who: &str) -> &'static str {
    match who {
        "sigcoro" => "#1f77b4",
        "glibc" => "#ff7f0e",
        "kernel" => "#7f7f7f",
        "corosensei" => "#2ca02c",
        "generator" => "#9467bd",
        "may" => "#8c564b",
        "tokio" => "#e377c2",
        _ => "#17becf",
    }
}

/// A horizontal bar chart on a log scale: one bar per row to its median, a whisker from its
/// fastest to its slowest run, grouped as in the table.
pub fn svg(rows: &[Row], title_lines: &[String]) -> String {
    const W: f64 = 1100.0;
    const LABEL_W: f64 = 400.0;
    const PLOT_X: f64 = LABEL_W + 10.0;
    const PLOT_W: f64 = 560.0;
    const ROW_H: f64 = 20.0;
    const GROUP_GAP: f64 = 12.0;
    let top = 40.0 + 16.0 * title_lines.len() as f64 + 30.0;
    let lo_v = rows
        .iter()
        .map(|r| r.stats.min.min(r.stats.median))
        .fold(f64::MAX, f64::min);
    let hi_v = rows.iter().map(|r| r.stats.max.max(r.stats.median)).fold(0.0, f64::max);
    let lo = lo_v.max(0.01).log10().floor();
    let hi = hi_v.max(lo_v * 10.0).log10().ceil();
    let x = |v: f64| PLOT_X + (v.max(1e-3).log10() - lo) / (hi - lo) * PLOT_W;

    let groups = rows.windows(2).filter(|w| w[0].group != w[1].group).count() as f64;
    let plot_h = ROW_H * rows.len() as f64 + GROUP_GAP * groups;
    let legend_y = top + plot_h + 40.0;
    let h = legend_y + 30.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\" \
         font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(o, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        o,
        "<text x=\"10\" y=\"24\" font-size=\"16\" font-weight=\"bold\">sigcoro context-switch lab: time per \
         operation, log scale (bar: median; whisker: fastest to slowest run)</text>"
    );
    for (i, line) in title_lines.iter().enumerate() {
        let _ = writeln!(
            o,
            "<text x=\"10\" y=\"{}\" fill=\"#444\">{}</text>",
            44.0 + 16.0 * i as f64,
            xml(line)
        );
    }
    // Decade grid lines with labels, lighter lines at 2x and 5x.
    let mut d = lo as i32;
    while d <= hi as i32 {
        let v = 10f64.powi(d);
        let gx = x(v);
        let _ = writeln!(
            o,
            "<line x1=\"{gx:.1}\" y1=\"{:.1}\" x2=\"{gx:.1}\" y2=\"{:.1}\" stroke=\"#bbb\"/>",
            top - 6.0,
            top + plot_h
        );
        let _ = writeln!(
            o,
            "<text x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#444\">{}</text>",
            top - 10.0,
            axis_label(v)
        );
        if d < hi as i32 {
            for m in [2.0, 5.0] {
                let mx = x(v * m);
                let _ = writeln!(
                    o,
                    "<line x1=\"{mx:.1}\" y1=\"{top:.1}\" x2=\"{mx:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>",
                    top + plot_h
                );
            }
        }
        d += 1;
    }
    let mut y = top;
    for (i, r) in rows.iter().enumerate() {
        if i > 0 && rows[i - 1].group != r.group {
            y += GROUP_GAP;
            let _ = writeln!(
                o,
                "<line x1=\"10\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\" stroke-dasharray=\"3,3\"/>",
                y - GROUP_GAP / 2.0,
                W - 10.0,
                y - GROUP_GAP / 2.0
            );
        }
        let s = &r.stats;
        let cy = y + ROW_H / 2.0;
        let label = format!("{}  {} [{}]", i + 1, r.name, r.group);
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LABEL_W,
            cy + 4.0,
            xml(&label)
        );
        let bx = x(s.median);
        let _ = writeln!(
            o,
            "<rect x=\"{PLOT_X:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{}\"><title>{}: median {}, \
             min {}, max {}</title></rect>",
            cy - 6.0,
            (bx - PLOT_X).max(1.0),
            color(&r.who),
            xml(&r.name),
            fmt_ns(s.median),
            fmt_ns(s.min),
            fmt_ns(s.max)
        );
        let (x0, x1) = (x(s.min), x(s.max));
        let _ = writeln!(
            o,
            "<path d=\"M{x0:.1} {cy:.1}H{x1:.1}M{x0:.1} {:.1}V{:.1}M{x1:.1} {:.1}V{:.1}\" stroke=\"#222\" fill=\"none\"/>",
            cy - 4.0,
            cy + 4.0,
            cy - 4.0,
            cy + 4.0
        );
        let mark = if r.note.is_empty() { "" } else { " *" };
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#222\">{}{}</text>",
            x1.max(bx) + 6.0,
            cy + 4.0,
            fmt_ns(s.median),
            mark
        );
        y += ROW_H;
    }
    // Legend: one swatch per implementation present.
    let mut lx = 10.0;
    let mut seen: Vec<&str> = Vec::new();
    for r in rows {
        if seen.contains(&r.who.as_str()) {
            continue;
        }
        seen.push(&r.who);
        let _ = writeln!(
            o,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            legend_y - 10.0,
            color(&r.who),
            lx + 16.0,
            legend_y,
            xml(&r.who)
        );
        lx += 30.0 + 8.0 * r.who.len() as f64;
    }
    let _ = writeln!(
        o,
        "<text x=\"{:.1}\" y=\"{legend_y:.1}\" fill=\"#444\">* a note in the table: treat the figure with care</text>",
        lx + 20.0
    );
    o.push_str("</svg>\n");
    o
}
