//! A key's requests per day by status class, as an SVG drawn on the server (stacked bars:
//! 2xx and 3xx, 4xx, 5xx), with a text summary for screen readers and a `<title>` per bar.

use std::collections::BTreeMap;

use maud::{Markup, html};
use time::{Date, Duration};

use crate::usage::api::DayView;

const WIDTH: u32 = 600;
const HEIGHT: u32 = 140;
const BOTTOM: u32 = 18;

/// Requests of one day, by class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DayCounts {
    /// 1xx, 2xx and 3xx.
    pub ok: u64,
    /// 4xx.
    pub client: u64,
    /// 5xx.
    pub server: u64,
}

impl DayCounts {
    fn total(self) -> u64 {
        self.ok + self.client + self.server
    }
}

/// Every day from `from` to `to` (both `YYYY-MM-DD`), with the counts of `days` (missing days
/// are zero).
pub fn fill(from: &str, to: &str, days: &[DayView]) -> Vec<(String, DayCounts)> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let (Ok(first), Ok(last)) = (Date::parse(from, &format), Date::parse(to, &format)) else {
        return Vec::new();
    };
    let by_day: BTreeMap<&str, &DayView> = days.iter().map(|day| (day.day.as_str(), day)).collect();
    let mut filled = Vec::new();
    let mut day = first;
    while day <= last && filled.len() < 366 {
        let text = day.format(&format).unwrap_or_default();
        let mut counts = DayCounts::default();
        if let Some(view) = by_day.get(text.as_str()) {
            for (status, requests) in &view.by_status {
                match status.as_bytes().first() {
                    Some(b'4') => counts.client += requests,
                    Some(b'5') => counts.server += requests,
                    _ => counts.ok += requests,
                }
            }
        }
        filled.push((text, counts));
        day += Duration::days(1);
    }
    filled
}

/// The chart.
pub fn chart(days: &[(String, DayCounts)]) -> Markup {
    let most = days
        .iter()
        .map(|(_, c)| c.total())
        .max()
        .unwrap_or(0)
        .max(1);
    let total: DayCounts = days
        .iter()
        .fold(DayCounts::default(), |sum, (_, c)| DayCounts {
            ok: sum.ok + c.ok,
            client: sum.client + c.client,
            server: sum.server + c.server,
        });
    let count = u32::try_from(days.len()).unwrap_or(1).max(1);
    let slot = WIDTH / count;
    let bar = slot.saturating_sub(2).max(1);
    let plot = HEIGHT - BOTTOM;
    let scale = |requests: u64| -> u32 {
        u32::try_from(requests.saturating_mul(u64::from(plot)) / most).unwrap_or(plot)
    };
    html! {
        figure.chart {
            svg viewBox={"0 0 " (WIDTH) " " (HEIGHT)} width=(WIDTH) height=(HEIGHT) role="img" aria-labelledby="usage-summary" {
                @for (index, (day, counts)) in days.iter().enumerate() {
                    @let x = u32::try_from(index).unwrap_or(0) * slot;
                    @let ok = scale(counts.ok);
                    @let client = scale(counts.client);
                    @let server = scale(counts.server);
                    g {
                        title { (day) ": " (counts.ok) " 2xx/3xx, " (counts.client) " 4xx, " (counts.server) " 5xx" }
                        rect.s2xx x=(x) y=(plot - ok) width=(bar) height=(ok) {}
                        rect.s4xx x=(x) y=(plot - ok - client) width=(bar) height=(client) {}
                        rect.s5xx x=(x) y=(plot - ok - client - server) width=(bar) height=(server) {}
                    }
                }
                @if let (Some((first, _)), Some((last, _))) = (days.first(), days.last()) {
                    text x="0" y=(HEIGHT - 4) font-size="11" { (first) }
                    text x=(WIDTH) y=(HEIGHT - 4) font-size="11" text-anchor="end" { (last) }
                }
            }
            figcaption id="usage-summary" {
                (total.total()) @if total.total() == 1 { " request" } @else { " requests" } " in these " (days.len()) " days: "
                (total.ok) " succeeded (2xx/3xx), " (total.client) " refused (4xx), " (total.server) " failed (5xx). "
                "The busiest day had " (most) "."
            }
            div.legend aria-hidden="true" {
                span { span.swatch.s2xx {} "2xx/3xx" }
                span { span.swatch.s4xx {} "4xx" }
                span { span.swatch.s5xx {} "5xx" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_days_are_zero_and_statuses_fall_into_classes() {
        let days = vec![DayView {
            day: "2026-12-02".into(),
            requests: 6,
            by_status: [
                ("200".to_owned(), 3),
                ("401".to_owned(), 2),
                ("503".to_owned(), 1),
            ]
            .into_iter()
            .collect(),
        }];
        let filled = fill("2026-12-01", "2026-12-03", &days);
        assert_eq!(filled.len(), 3);
        assert_eq!(filled[0].1, DayCounts::default());
        assert_eq!(
            filled[1].1,
            DayCounts {
                ok: 3,
                client: 2,
                server: 1
            }
        );
        let svg = chart(&filled).into_string();
        assert!(svg.contains("6 requests in these 3 days"), "{svg}");
        assert!(svg.contains("2026-12-02: 3 2xx/3xx, 2 4xx, 1 5xx"), "{svg}");
    }
}
