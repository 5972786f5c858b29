//! Writes the Debian package's man pages and shell completions, generated from
//! the clap definitions so they never drift from `webhookd --help`.
//! deploy/deb/build.sh runs it: `cargo run --example deb_assets -- OUTDIR [DATE]`
//! writes OUTDIR/man/*.1 (one page per command) and OUTDIR/completions/.
//! An example rather than a `webhookd completions` command: the daemon
//! neither carries clap_mangen/clap_complete nor grows its command contract.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use webhookd::cli::Cli;

/// Appended to webhookd(1): what the package puts where, beyond the options.
const FILES_AND_SEE_ALSO: &str = r#".SH ENVIRONMENT
Every setting is an environment variable (WEBHOOKD_*), read from the
environment and from the file given with \fB\-\-env\-file\fR.
Each variable and its default is listed in
/usr/share/doc/webhookd/examples/env.example and in the README.
.SH FILES
.TP
/etc/webhookd/webhookd.env
Settings for the systemd service, \fIKEY\fR=\fIvalue\fR lines; no secrets.
.TP
/etc/webhookd/webhook\-secret, /etc/webhookd/github\-token
Secrets, root only (mode 0600), passed to the service as credentials.
.TP
/lib/systemd/system/webhookd.service
The service; change it with \fBsystemctl edit webhookd\fR.
.TP
/lib/systemd/system/webhookd.socket
Its listening socket, 127.0.0.1:8080.
.TP
/var/lib/webhookd/
The service's delivery store.
.TP
/usr/share/doc/webhookd/
README.md, docs/install.md (installing, upgrading, removing), the operations
guide in docs/operations.md, the example rules in examples/rules.toml.
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBsystemd.exec\fR(5)
"#;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: deb_assets OUTDIR [DATE]");
        return ExitCode::from(2);
    };
    let date = args.next().map(|d| d.to_string_lossy().into_owned());
    match generate(&out, date.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deb_assets: writing under {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path, date: Option<&str>) -> std::io::Result<()> {
    let man_dir = out.join("man");
    let completions_dir = out.join("completions");
    fs::create_dir_all(&man_dir)?;
    fs::create_dir_all(&completions_dir)?;

    // As clap_mangen::generate_to, plus the date and webhookd(1)'s extra sections.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    man_pages(&cmd, &man_dir, date, true)?;

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "webhookd", &completions_dir)?;
    }
    Ok(())
}

fn man_pages(cmd: &clap::Command, dir: &Path, date: Option<&str>, top: bool) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, dir, date, false)?;
    }
    let mut man = clap_mangen::Man::new(cmd.clone())
        .manual("webhookd manual")
        .source(concat!("webhookd ", env!("CARGO_PKG_VERSION")));
    if let Some(date) = date {
        man = man.date(date);
    }
    let mut file = fs::File::create(dir.join(man.get_filename()))?;
    man.render(&mut file)?;
    if top {
        file.write_all(FILES_AND_SEE_ALSO.as_bytes())?;
    }
    file.flush()
}
