//! `webhookd send FILE --event E [--url URL]`.

use std::process::ExitCode;

use secrecy::SecretString;

use crate::cli::SendArgs;
use crate::config::Env;
use crate::run::{EXIT_CONFIG, EXIT_RUNTIME, load_settings, runtime};
use crate::send;
use crate::webhook::headers::EventName;

pub fn send(env: &Env, args: &SendArgs) -> ExitCode {
    let settings = match load_settings(env) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let event = match EventName::parse(&args.event) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("webhookd: --event: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(secret) = settings.secrets.first() else {
        eprintln!("webhookd: WEBHOOKD_SECRET: required to sign the delivery");
        return ExitCode::from(EXIT_CONFIG);
    };
    let url = args.url.clone().unwrap_or_else(|| send::default_url(settings.listen));
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    if args.count.is_some() || args.duration.is_some() {
        return load(&rt, secret, args, &event, &url);
    }
    match rt.block_on(send::send_file(secret, &args.file, &event, &url)) {
        Ok(sent) => {
            out!("delivery {} -> HTTP {}", sent.delivery_id, sent.status);
            out!("{}", sent.body);
            if (200..300).contains(&sent.status) { ExitCode::SUCCESS } else { ExitCode::from(EXIT_RUNTIME) }
        }
        Err(e) => {
            eprintln!("webhookd: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// `send --count N | --duration D`: a load run, with figures.
fn load(
    rt: &tokio::runtime::Runtime,
    secret: &SecretString,
    args: &SendArgs,
    event: &EventName,
    url: &str,
) -> ExitCode {
    let body = match std::fs::read(&args.file) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("webhookd: cannot read {}: {e}", args.file.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let sustained = if args.sustained {
        match send::metrics_url_beside(url) {
            Ok(metrics_url) => Some(send::SustainedPlan { metrics_url, drain_limit: args.drain_limit }),
            Err(e) => {
                eprintln!("webhookd: {e:#}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    } else {
        None
    };
    let plan = send::LoadPlan {
        count: args.count.unwrap_or(0),
        concurrency: args.concurrency,
        duration: args.duration,
        sustained,
    };
    let report = match rt.block_on(send::load(secret, body, event, url, plan)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("webhookd: {e:#}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    if args.json {
        out!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        let l = &report.latency_ms;
        out!(
            "sent {} deliveries in {:.2} s with {} senders: {:.0} deliveries/s",
            report.sent,
            report.seconds,
            args.concurrency,
            report.deliveries_per_second
        );
        out!("latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}", l.p50, l.p90, l.p99, l.max);
        let statuses: Vec<String> = report.status.iter().map(|(code, n)| format!("{code}: {n}")).collect();
        out!(
            "answers: {}{}",
            statuses.join(", "),
            if report.errors > 0 { format!(", no answer: {}", report.errors) } else { String::new() }
        );
        if let Some(s) = &report.sustained {
            match (s.seconds_until_processed, s.deliveries_per_second) {
                (Some(seconds), Some(rate)) => out!(
                    "sustained: {} accepted ({:.1}% refused), all processed {:.2} s after the first request: {:.0} deliveries/s accepted and processed ({} processed while sending)",
                    s.accepted,
                    s.refused_share * 100.0,
                    seconds,
                    rate,
                    s.processed_while_sending
                ),
                _ => out!(
                    "sustained: {} accepted ({:.1}% refused), NOT all processed within --drain-limit {}",
                    s.accepted,
                    s.refused_share * 100.0,
                    humantime::format_duration(args.drain_limit)
                ),
            }
        }
    }
    if report.sustained.as_ref().is_some_and(|s| s.seconds_until_processed.is_none()) {
        return ExitCode::from(EXIT_RUNTIME);
    }
    if report.all_accepted() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_RUNTIME) }
}
