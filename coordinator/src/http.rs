//! The coordinator's read-only HTTP side: `/metrics` (Prometheus), `/` (a status page that
//! refreshes itself), `/healthz`. Separate from the gRPC port so that a scraper or a browser
//! needs no gRPC, and so that it can be exposed differently.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

use crate::coordinator::Coordinator;
use crate::status::job_status;

/// Serves the HTTP side on `listener` until `shutdown` resolves.
pub async fn serve(
    coordinator: Arc<Coordinator>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(page))
        .with_state(coordinator);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(coordinator): State<Arc<Coordinator>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        coordinator.render_metrics(),
    )
}

/// `<`, `>`, `&`, `"` escaped for HTML text and attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

async fn page(State(coordinator): State<Arc<Coordinator>>) -> Html<String> {
    let rates = coordinator.rates();
    let (jobs, workers) = coordinator.read(|s| {
        let jobs: Vec<_> = s.jobs().map(|j| job_status(j, s)).collect();
        let mut workers: Vec<_> = s
            .workers()
            .iter()
            .map(|(id, w)| {
                let seen = w.last_seen.elapsed().as_secs_f64();
                (
                    id.to_string(),
                    w.name.clone(),
                    w.device.clone(),
                    w.slots,
                    seen,
                )
            })
            .collect();
        workers.sort_by(|a, b| a.0.cmp(&b.0));
        (jobs, workers)
    });
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\">\
         <title>hint coordinator</title><style>body{font:14px system-ui,sans-serif;margin:1.5em}\
         table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}\
         th{background:#f3f3f3}.bar{background:#e8e8e8;width:12em;height:.8em;display:inline-block}\
         .fill{background:#3a7;height:100%}</style></head><body><h1>hint coordinator</h1>",
    );
    let _ = write!(
        html,
        "<p>{} live worker(s) · {:.1} images/s · {:.1} permutations/s (last minute) · \
         <a href=\"/metrics\">metrics</a></p>",
        workers.len(),
        rates.images,
        rates.permutations
    );
    html.push_str("<h2>Jobs</h2><table><tr><th>job</th><th>name</th><th>phase</th><th>stage</th><th>progress</th><th>quarantined</th><th>error</th></tr>");
    for job in jobs.iter().rev() {
        let mut progress = String::new();
        for s in job.stages.iter().filter(|s| s.total > 0) {
            let fraction = s.units_done as f64 / s.units_total.max(1) as f64;
            let _ = write!(
                progress,
                "{} <span class=\"bar\"><span class=\"fill\" style=\"display:block;width:{:.1}%\"></span></span> {}/{} tasks<br>",
                escape(&s.stage),
                100.0 * fraction,
                s.done,
                s.total
            );
        }
        let phase = crate::status::phase_name(job.phase);
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{phase}</td><td>{}</td><td>{progress}</td><td>{}</td><td>{}</td></tr>",
            escape(&job.job_id),
            escape(&job.name),
            escape(&job.stage),
            job.quarantined.len(),
            escape(&job.error)
        );
    }
    html.push_str("</table><h2>Workers</h2><table><tr><th>id</th><th>name</th><th>device</th><th>slots</th><th>last poll</th></tr>");
    for (id, name, device, slots, seen) in &workers {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{slots}</td><td>{seen:.1} s ago</td></tr>",
            escape(id),
            escape(name),
            escape(device)
        );
    }
    html.push_str("</table></body></html>\n");
    Html(html)
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
