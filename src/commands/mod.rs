//! The one-shot commands of the CLI (`check`, `send`, `deliveries`, `store`, `recover`), each
//! returning the contract's exit code. `serve` lives in `run`.

/// `println!` that ignores a closed stdout (`… | head`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod check;
mod deliveries;
mod recover;
mod rules;
mod send;
mod store;

pub use check::check;
pub use deliveries::deliveries;
pub use recover::recover;
pub use rules::rules;
pub use send::send;
pub use store::store;
