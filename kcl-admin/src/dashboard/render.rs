//! The dashboard as HTML: [`page`] is the whole document (styles and the refresh script inline, no build step),
//! [`live`] the part the script replaces every scan interval (fetched from `/live`). Every string from the lease
//! table or a service is escaped: worker ids and error messages are not ours.
//!
//! Elements carry `data-` attributes (`data-shard`, `data-owner`, `data-millis`, `data-lease`, `data-from`,
//! `data-to`) so scripts and the browser test read values without parsing the text.

use std::fmt::Write;

use super::state::{Dashboard, ShardView, WorkerView};

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.2em;color:#222}\
h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.2em 0 .4em}\
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:middle}\
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}.meta{color:#666}\
.problem{background:#fde8e8;border:1px solid #e15759;padding:6px 10px;margin:4px 0;white-space:pre-wrap}\
.owned{color:#fff;text-align:center;font-weight:600}.swatch{display:inline-block;width:.9em;height:.9em;\
vertical-align:middle;margin-right:4px;border-radius:2px}.closed{color:#888}.child{padding-left:1.4em}\
.grid{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}";

/// Replaces `#live` with `/live` every scan interval; a failed fetch says so on the page instead of going stale
/// silently.
const SCRIPT: &str = "(function(){var every=Number(document.body.dataset.refreshMs)||5000;\
function tick(){fetch('live',{cache:'no-store'}).then(function(r){if(!r.ok)throw new Error('HTTP '+r.status);\
return r.text();}).then(function(html){document.getElementById('live').innerHTML=html;\
document.getElementById('offline').hidden=true;document.body.dataset.refreshes=\
String(Number(document.body.dataset.refreshes||0)+1);}).catch(function(e){var o=document.getElementById('offline');\
o.textContent='The dashboard server did not answer ('+e.message+'); showing the last state.';o.hidden=false;});}\
setInterval(tick,every);})();";

/// The whole page.
pub fn page(view: &Dashboard) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>kcl-admin dashboard: {table}</title>\
         <style>{STYLE}</style></head><body data-refresh-ms=\"{refresh}\" data-refreshes=\"0\">\
         <h1>kcl-admin dashboard</h1><p class=\"meta\">application (lease table) <b>{table}</b>, stream <b>{stream}</b>; \
         scanned every {interval} s, history {window} min. Read-only: lease table and Kinesis, no agent on workers.</p>\
         <p id=\"offline\" class=\"problem\" hidden></p><div id=\"live\">{live}</div><script>{SCRIPT}</script>\
         </body></html>",
        table = escape(&view.table),
        stream = escape(&view.stream),
        refresh = view.interval_secs.max(1) * 1000,
        interval = view.interval_secs,
        window = view.window_secs / 60,
        live = live(view),
    )
}

/// The refreshed part: problems, workers, lease map, lag, moves, unreadable items.
pub fn live(view: &Dashboard) -> String {
    let mut html = String::new();
    let scanned = match view.last_scan_ms {
        Some(ms) => format!("scan {} at <time data-ms=\"{ms}\">{}</time> UTC", view.scans, utc_time(ms)),
        None => "first scan in progress".to_owned(),
    };
    let _ = write!(html, "<p class=\"meta\" id=\"scan\" data-scans=\"{}\">{scanned}</p>", view.scans);
    html.push_str("<section id=\"problems\">");
    for problem in &view.problems {
        let _ = write!(
            html,
            "<div class=\"problem\" data-source=\"{}\"><b>{}:</b> {}</div>",
            escape(problem.source),
            escape(problem.source),
            escape(&problem.message)
        );
    }
    html.push_str("</section><div class=\"grid\">");
    workers(&mut html, view);
    moves(&mut html, view);
    html.push_str("</div>");
    lease_map(&mut html, view);
    unreadable(&mut html, view);
    html
}

fn workers(html: &mut String, view: &Dashboard) {
    html.push_str(
        "<section id=\"workers\"><h2>Workers</h2><table><tr><th>worker</th><th>leases</th><th>records/s</th>\
         <th>records in window</th></tr>",
    );
    if view.workers.is_empty() {
        html.push_str("<tr><td colspan=\"4\">no lease is owned</td></tr>");
    }
    for worker in &view.workers {
        let bound = if worker.lower_bound { "≥ " } else { "" };
        let rate = worker.records_per_second.map_or_else(|| "–".to_owned(), |r| format!("{bound}{r:.1}"));
        let _ = write!(
            html,
            "<tr data-worker=\"{id}\" data-leases=\"{leases}\"><td><span class=\"swatch\" style=\"background:{colour}\">\
             </span>{id}</td><td class=\"num\">{leases}</td><td class=\"num\">{rate}</td><td class=\"num\">{bound}{records}\
             </td></tr>",
            id = escape(&worker.worker_id),
            colour = escape(&worker.colour),
            leases = worker.leases,
            records = worker.records_in_window,
        );
    }
    html.push_str("</table></section>");
}

fn moves(html: &mut String, view: &Dashboard) {
    html.push_str("<section id=\"moves\"><h2>Recent lease moves</h2>");
    if view.moves.is_empty() {
        html.push_str("<p class=\"meta\">no owner change seen since the dashboard started</p>");
    } else {
        html.push_str("<table><tr><th>seen at (UTC)</th><th>lease</th><th>from</th><th>to</th></tr>");
        for m in &view.moves {
            let from = m.from.as_deref().unwrap_or("");
            let to = m.to.as_deref().unwrap_or("");
            let _ = write!(
                html,
                "<tr class=\"move\" data-lease=\"{lease}\" data-from=\"{f}\" data-to=\"{t}\"><td>{at}</td><td>{lease}</td>\
                 <td>{fshow}</td><td>{tshow}</td></tr>",
                lease = escape(&m.lease_key),
                f = escape(from),
                t = escape(to),
                at = utc_time(m.seen_at_ms),
                fshow = if from.is_empty() { "(unowned)".to_owned() } else { escape(from) },
                tshow = if to.is_empty() { "(unowned)".to_owned() } else { escape(to) },
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</section>");
}

fn lease_map(html: &mut String, view: &Dashboard) {
    html.push_str(
        "<section id=\"leases\"><h2>Lease map and lag</h2><p class=\"meta\">one row per shard (children indented \
         under the shards they came from); a coloured cell marks the owner. Lag = MillisBehindLatest right after the \
         checkpoint (records read but not checkpointed count as lag).</p><table><tr><th>shard</th><th>state</th>",
    );
    for worker in &view.workers {
        let _ = write!(
            html,
            "<th><span class=\"swatch\" style=\"background:{}\"></span>{}</th>",
            escape(&worker.colour),
            escape(&worker.worker_id)
        );
    }
    html.push_str(
        "<th>other owner</th><th>parents → children</th><th>checkpoint</th><th>counter</th><th>lag ms</th>\
         <th>next record age</th><th>lag, last minutes</th></tr>",
    );
    for shard in &view.shards {
        shard_row(html, view, shard);
    }
    html.push_str("</table></section>");
}

fn shard_row(html: &mut String, view: &Dashboard, shard: &ShardView) {
    let owner = shard.owner.as_deref().unwrap_or("");
    let state = match shard.open {
        Some(true) => "open",
        Some(false) => "closed",
        None => "?",
    };
    let class = if shard.open == Some(false) { " class=\"closed\"" } else { "" };
    let indent = if shard.parent_shard_ids.is_empty() { "" } else { " class=\"child\"" };
    let _ = write!(
        html,
        "<tr data-shard=\"{id}\" data-owner=\"{owner_attr}\" data-status=\"{status}\"{class}><td{indent}>{id}</td>\
         <td title=\"{note}\">{state}, {status}</td>",
        id = escape(&shard.shard_id),
        owner_attr = escape(owner),
        status = escape(&shard.status),
        note = escape(shard.note.as_deref().unwrap_or("")),
    );
    let mut known = false;
    for worker in &view.workers {
        known |= owner_cell(html, shard, worker);
    }
    let other = if known || owner.is_empty() { String::new() } else { escape(owner) };
    let handoff = shard
        .checkpoint_owner
        .as_deref()
        .map(|previous| format!(" (handoff from {})", escape(previous)))
        .unwrap_or_default();
    let family = format!(
        "{} → {}",
        if shard.parent_shard_ids.is_empty() { "–".to_owned() } else { escape(&shard.parent_shard_ids.join(", ")) },
        if shard.child_shard_ids.is_empty() { "–".to_owned() } else { escape(&shard.child_shard_ids.join(", ")) },
    );
    let millis = shard.millis_behind_latest.map_or_else(String::new, |m| m.to_string());
    let _ = write!(
        html,
        "<td>{other}{handoff}</td><td>{family}</td><td>{checkpoint}</td><td class=\"num\">{counter}</td>\
         <td class=\"num lag\" data-millis=\"{millis}\">{millis_show}</td><td class=\"num\">{age}</td><td>{spark}</td></tr>",
        checkpoint = escape(shard.checkpoint.as_deref().unwrap_or("–")),
        counter = shard.lease_counter.map_or_else(|| "–".to_owned(), |c| c.to_string()),
        millis_show = if millis.is_empty() { "–" } else { millis.as_str() },
        age = shard.next_record_age_millis.map_or_else(|| "–".to_owned(), |a| format!("{a} ms")),
        spark = sparkline(&shard.lag_history),
    );
}

/// The owner cell of `worker` in `shard`'s row; whether `worker` owns the shard.
fn owner_cell(html: &mut String, shard: &ShardView, worker: &WorkerView) -> bool {
    if shard.owner.as_deref() == Some(worker.worker_id.as_str()) {
        let _ = write!(
            html,
            "<td class=\"owned\" style=\"background:{}\" title=\"{}\">■</td>",
            escape(&worker.colour),
            escape(&worker.worker_id)
        );
        true
    } else {
        html.push_str("<td></td>");
        false
    }
}

/// An inline SVG line of lag samples, scaled to the largest; gaps where a scan could not measure.
pub fn sparkline(samples: &[Option<u64>]) -> String {
    const WIDTH: f64 = 120.0;
    const HEIGHT: f64 = 22.0;
    let max = samples.iter().flatten().copied().max().unwrap_or(0).max(1);
    if samples.iter().all(Option::is_none) {
        return String::new();
    }
    let step = if samples.len() > 1 { WIDTH / (samples.len() - 1) as f64 } else { 0.0 };
    let mut lines = Vec::new();
    let mut current = Vec::new();
    for (i, sample) in samples.iter().enumerate() {
        match sample {
            Some(value) => {
                let y = HEIGHT - 1.0 - (*value as f64 / max as f64) * (HEIGHT - 2.0);
                current.push(format!("{:.1},{y:.1}", i as f64 * step));
            }
            None if !current.is_empty() => lines.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    let mut svg = format!(
        "<svg class=\"spark\" width=\"{WIDTH}\" height=\"{HEIGHT}\" data-samples=\"{}\" data-max=\"{max}\">\
         <title>max {max} ms behind over the window</title>",
        samples.len()
    );
    for line in lines {
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"#4e79a7\" stroke-width=\"1.5\" points=\"{}\"/>",
            line.join(" ")
        );
    }
    svg.push_str("</svg>");
    svg
}

fn unreadable(html: &mut String, view: &Dashboard) {
    html.push_str("<section id=\"unreadable\"><h2>Unreadable lease items</h2>");
    match &view.unreadable_items {
        None => html.push_str(
            "<p class=\"meta\" data-available=\"false\">not known yet: the lease table has not been read</p>",
        ),
        Some(items) if items.is_empty() => {
            html.push_str("<p class=\"meta\" data-available=\"true\">none: every item of the table was read</p>")
        }
        Some(items) => {
            html.push_str("<ul data-available=\"true\">");
            for item in items {
                let _ = write!(html, "<li class=\"problem\">{}</li>", escape(item));
            }
            html.push_str("</ul><p class=\"meta\">fix them with <code>kcl-admin repair</code></p>");
        }
    }
    html.push_str("</section>");
}

/// `HH:MM:SS` of a Unix time in milliseconds, UTC.
fn utc_time(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{:02}:{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::{escape, sparkline, utc_time};

    #[test]
    fn escapes_markup_from_the_table() {
        assert_eq!(escape("<w1 \"a\" & 'b'>"), "&lt;w1 &quot;a&quot; &amp; &#39;b&#39;&gt;");
    }

    #[test]
    fn sparklines_break_at_unmeasured_scans_and_scale_to_the_largest() {
        let cases: &[(&[Option<u64>], usize, &str)] = &[
            (&[], 0, ""),
            (&[None, None], 0, ""),
            (&[Some(0), Some(10), Some(5)], 1, "data-max=\"10\""),
            (&[Some(4), None, Some(8), Some(2)], 2, "data-max=\"8\""),
        ];
        for (samples, lines, max) in cases {
            let svg = sparkline(samples);
            assert_eq!(svg.matches("<polyline").count(), *lines, "{samples:?}: {svg}");
            assert!(svg.contains(max), "{samples:?}: {svg}");
        }
    }

    #[test]
    fn times_are_utc_clock_times() {
        assert_eq!(utc_time(0), "00:00:00");
        assert_eq!(utc_time(((25 * 3600 + 61) * 1000) + 999), "01:01:01");
    }
}
