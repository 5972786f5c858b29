//! `webhookd send FILE --event E [--url URL]`.

use std::process::ExitCode;

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
    match rt.block_on(send::send_file(secret, &args.file, &event, &url)) {
        Ok(sent) => {
            println!("delivery {} -> HTTP {}", sent.delivery_id, sent.status);
            println!("{}", sent.body);
            if (200..300).contains(&sent.status) { ExitCode::SUCCESS } else { ExitCode::from(EXIT_RUNTIME) }
        }
        Err(e) => {
            eprintln!("webhookd: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
