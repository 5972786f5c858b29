//! The one-shot commands of the CLI (`check`, `send`, `deliveries`), each
//! returning the contract's exit code. `serve` lives in `run`.

mod check;
mod deliveries;
mod send;

pub use check::check;
pub use deliveries::deliveries;
pub use send::send;
