//! The limits of one render (a template, or an `if` expression): a rule that
//! loops or grows without end fails its action with an error naming the
//! limit, instead of taking the process down.
//!
//! - Fuel: every minijinja instruction costs one unit; a render gets
//!   `TEMPLATE_FUEL`. This bounds the steps, hence the time, of a render.
//! - Output: text is rendered into a writer that refuses to grow past
//!   `MAX_RENDERED_CHARS`, so emitted text never accumulates beyond it.
//! - One step can still build a large value before anything is emitted:
//!   minijinja caps `string * n` at 100 MB and `range` at 100,000 items, but
//!   not `~` or filters such as `join` and `replace`. The rules file is the
//!   operator's, so this bounds mistakes, not a hostile author.

use std::fmt;
use std::io;

use minijinja::{ErrorKind, Template};

/// Instructions one render or `if` may execute. A comment looping over a
/// push's 2,048 commits with a condition each takes about 20,000; this
/// leaves five times that, and a runaway loop stops within tens of ms.
pub const TEMPLATE_FUEL: u64 = 100_000;

/// Longest text a template may render, in characters: GitHub's own limit for
/// a comment body (65,536); no other field takes more.
pub const MAX_RENDERED_CHARS: usize = 65_536;

/// Why a render failed.
#[derive(Debug)]
pub enum RenderError {
    /// The template ran more than `TEMPLATE_FUEL` instructions.
    OutOfFuel,
    /// The template rendered more than `MAX_RENDERED_CHARS`.
    TooLong,
    /// Any other template error (an undefined field, a type error...).
    Template(minijinja::Error),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfFuel => {
                write!(f, "it ran out of fuel: more than {TEMPLATE_FUEL} steps (the limit per template)")
            }
            Self::TooLong => {
                write!(f, "its output is longer than {MAX_RENDERED_CHARS} characters (the limit per template)")
            }
            Self::Template(e) => write!(f, "{e}"),
        }
    }
}

impl From<minijinja::Error> for RenderError {
    fn from(e: minijinja::Error) -> Self {
        if e.kind() == ErrorKind::OutOfFuel { Self::OutOfFuel } else { Self::Template(e) }
    }
}

/// Renders `template` against `ctx` within the output cap (fuel is the
/// environment's).
pub fn render_capped(template: &Template<'_, '_>, ctx: &minijinja::Value) -> Result<String, RenderError> {
    let mut output = CappedOutput::default();
    match template.render_captured_to(ctx, &mut output) {
        Ok(_) => {}
        Err(_) if output.exceeded => return Err(RenderError::TooLong),
        Err(e) => return Err(e.into()),
    }
    // minijinja writes whole `str` pieces, and the writer keeps or refuses
    // each whole: the bytes are UTF-8.
    String::from_utf8(output.text).map_err(|_| {
        RenderError::Template(minijinja::Error::new(ErrorKind::WriteFailure, "rendered text is not UTF-8"))
    })
}

/// A writer that keeps at most `MAX_RENDERED_CHARS` characters and fails
/// the render once more come.
#[derive(Default)]
struct CappedOutput {
    text: Vec<u8>,
    chars: usize,
    exceeded: bool,
}

impl io::Write for CappedOutput {
    fn write(&mut self, piece: &[u8]) -> io::Result<usize> {
        // Characters of a UTF-8 piece: the bytes that do not continue one.
        let chars = piece.iter().filter(|b| (**b & 0xC0) != 0x80).count();
        if self.chars + chars > MAX_RENDERED_CHARS {
            self.exceeded = true;
            return Err(io::Error::other("rendered text too long"));
        }
        self.text.extend_from_slice(piece);
        self.chars += chars;
        Ok(piece.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use minijinja::{Environment, context};

    use super::*;

    fn env_with(source: &str) -> Environment<'static> {
        let mut env = Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_template_owned("t", source.to_owned()).expect("compiles");
        env
    }

    fn render(source: &str) -> Result<String, RenderError> {
        let env = env_with(source);
        let template = env.get_template("t").expect("template");
        render_capped(&template, &context! { name => "Mona" })
    }

    #[test]
    fn a_normal_template_renders() {
        assert_eq!(render("Hi {{ name }} ✓").expect("renders"), "Hi Mona ✓");
    }

    #[test]
    fn an_endless_loop_runs_out_of_fuel() {
        let error = render("{% for i in range(100000) %}{% set x = i %}{% endfor %}").expect_err("out of fuel");
        assert!(matches!(error, RenderError::OutOfFuel), "{error}");
        assert!(error.to_string().contains("100000 steps"), "{error}");
    }

    #[test]
    fn output_past_the_cap_fails_and_up_to_it_renders() {
        let error = render("{{ 'x' * 65537 }}").expect_err("too long");
        assert!(matches!(error, RenderError::TooLong), "{error}");
        assert!(error.to_string().contains("65536 characters"), "{error}");
        assert_eq!(render("{{ 'x' * 65536 }}").expect("at the cap").len(), MAX_RENDERED_CHARS);
        // Characters, not bytes: GitHub counts characters.
        assert_eq!(render("{{ 'é' * 65536 }}").expect("at the cap").chars().count(), MAX_RENDERED_CHARS);
        assert!(matches!(render("{% for i in range(70) %}{{ 'x' * 1000 }}{% endfor %}"), Err(RenderError::TooLong)));
    }

    #[test]
    fn the_runaway_rule_of_issue_11_fails_at_its_first_write() {
        let error = render("{% for i in range(100000) %}{{ 'x'*100000000 }}{% endfor %}").expect_err("refused");
        assert!(matches!(error, RenderError::TooLong), "{error}");
    }
}
